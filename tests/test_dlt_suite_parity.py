"""Parity fixes found by dlt's own rest_api test suite (`nox -s dlt_suite`), one test each."""

from __future__ import annotations

import json
from typing import Any

import dlt
import pytest
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.exceptions import DictValidationException
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator
from dlt.sources.rest_api.config_setup import PAGINATOR_MAP, register_paginator
from requests import HTTPError, Session

from sources.support_api import ConfigError, HTTPStatusError, support_api_from_config
from sources.support_api.http_policy import PacedAdapter
from tests.fake_api import Host, json_page, loopback_hosts
from tests.helpers import find_cause, make_pipeline, table_ids

hosts = loopback_hosts

TOTAL_PAGES = 5


def _numbered_pages(host: Host, path: str, query: dict[str, list[str]]):
    del host, path
    page = int(query.get("page", ["1"])[0])
    rows = [{"id": page * 10 + i} for i in range(5)] if page <= TOTAL_PAGES else []
    return json_page(rows, total_pages=TOTAL_PAGES)


def _source(origin: str, paginator: dict[str, Any], **endpoint: Any):
    return support_api_from_config(
        {
            "client": {"base_url": origin, "paginator": paginator},
            "resources": [{"name": "posts", "endpoint": {"path": "posts", **endpoint}}],
        }
    )


def test_page_number_walk_with_a_total_asks_for_no_page_past_it(hosts, tmp_path):
    host = hosts("127.0.0.1", _numbered_pages)
    source = _source(host.origin, {"type": "page_number", "total_path": "total_pages"})
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)
    assert len(table_ids(pipeline, "posts")) == 5 * TOTAL_PAGES
    pages = [int(seen.query["page"][0]) for seen in host.seen]
    assert sorted(pages) == [1, 2, 3, 4, 5]


def _posts_and_comments(host: Host, path: str, query: dict[str, list[str]]):
    del host
    page = int(query.get("page", ["1"])[0])
    if path == "/posts":
        return json_page([{"id": 1}, {"id": 2}] if page == 1 else [], total_pages=1)
    post = int(path.split("/")[2])
    rows = [{"id": post * 100 + page * 10 + i} for i in range(2)] if page <= 2 else []
    return json_page(rows, total_pages=2)


def test_paginated_child_of_an_incremental_parent_in_parallel(hosts, tmp_path):
    # dlt deep-copies a child's paginator per parent record: the session the paginator
    # fetches ahead with is shared, not copied (it holds a threading.local)
    host = hosts("127.0.0.1", _posts_and_comments)
    paginator = {"type": "page_number", "total_path": "total_pages"}
    source = support_api_from_config(
        {
            "client": {"base_url": host.origin, "paginator": paginator},
            "resources": [
                {
                    "name": "posts",
                    "endpoint": {
                        "path": "posts",
                        "incremental": {"cursor_path": "id", "initial_value": 0},
                    },
                },
                {
                    "name": "comments",
                    "endpoint": {"path": "posts/{resources.posts.id}/comments"},
                    "parallelized": True,
                },
            ],
        }
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source.with_resources("comments"))
    assert table_ids(pipeline, "comments") == [110, 111, 120, 121, 210, 211, 220, 221]


def _config(**client: Any) -> dict[str, Any]:
    return {"client": {"base_url": "https://api.example.com", **client}, "resources": ["posts"]}


@pytest.mark.parametrize(
    ("config", "dlt_words"),
    [
        ({"client": {"base_url": ""}}, "missing required fields `{'resources'}`"),
        ({"resources": []}, "missing required fields `{'client'}`"),
        (_config(invalid_key="x"), "Path `./client`: received unexpected fields `{'invalid_key'}`"),
        (_config(paginator="invalid_paginator"), "field `paginator` expects the following types: "),
    ],
)
def test_config_errors_are_dlt_validation_errors_in_dlt_words(config, dlt_words):
    with pytest.raises(DictValidationException) as error:
        support_api_from_config(config)
    assert isinstance(error.value, ConfigError)
    assert dlt_words in str(error.value)


def test_auth_error_quotes_dlt_with_every_secret_masked():
    auth = {"type": "bearer", "location": "header", "token": "sensitive-secret"}
    with pytest.raises(DictValidationException) as error:
        support_api_from_config(_config(auth=auth))
    assert "sensitive-secret" not in str(error.value)
    assert "`{'type': 'bearer', 'location': 'header', 'token': 's*****t'}`" in str(error.value)


def test_missing_credential_is_dlts_exception_naming_the_source_section(monkeypatch):
    monkeypatch.delenv("CREDENTIALS__API_KEY", raising=False)
    with pytest.raises(ConfigFieldMissingException) as error:
        support_api_from_config(_config(auth="api_key"), name="invalid_config")
    assert "SOURCES__SUPPORT_API__INVALID_CONFIG__CREDENTIALS__API_KEY" in str(error.value)


def test_credential_is_read_from_the_source_section(monkeypatch):
    monkeypatch.setenv("SOURCES__SUPPORT_API__MY_API__CREDENTIALS__API_KEY", "key-from-env")
    source = support_api_from_config(_config(auth={"type": "api_key"}), name="my_api")
    assert source.resources["posts"] is not None


def test_paginator_registered_with_dlt_is_accepted():
    class Custom(JSONLinkPaginator):
        def __init__(self) -> None:
            super().__init__(next_url_path="next")

    register_paginator("parity_custom", Custom)
    try:
        source = support_api_from_config(_config(paginator={"type": "parity_custom"}))
    finally:
        del PAGINATOR_MAP["parity_custom"]
    assert "posts" in source.resources


def _not_found(host: Host, path: str, query: dict[str, list[str]]):
    del host, path, query
    return 404, {}, b'{"error": "no such post"}'


def test_status_error_reads_as_requests_words_it(hosts, tmp_path):
    host = hosts("127.0.0.1", _not_found)
    source = support_api_from_config({"client": {"base_url": host.origin}, "resources": ["posts"]})
    with pytest.raises(PipelineStepFailed) as failure:
        make_pipeline(tmp_path).run(source)
    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPError)
    assert f"404 Client Error: Not Found for url: {host.origin}/posts" in str(error)


def test_resources_come_parents_first_as_dlt_orders_them():
    @dlt.resource(selected=False)
    def repositories():
        yield [{"name": "dlt"}]

    source = support_api_from_config(
        {
            "client": {"base_url": "https://api.example.com"},
            "resources": [
                {"name": "issues", "endpoint": {"path": "{resources.repositories.name}/issues"}},
                "users",
                repositories(),
            ],
        }
    )
    assert list(source.resources) == ["repositories", "users", "issues"]  # as dlt orders them
    assert list(source.selected_resources) == ["users", "issues"]


def _one_page(host: Host, path: str, query: dict[str, list[str]]):
    del host, path, query
    return json_page([{"id": 1}, {"id": 2}])


def test_session_given_in_client_is_used_with_pacing_mounted(hosts, tmp_path):
    host = hosts("127.0.0.1", _one_page)
    sent: list[str] = []

    class CountingSession(Session):
        def send(self, request, **kwargs):
            sent.append(request.url)
            return super().send(request, **kwargs)

    session = CountingSession()
    source = support_api_from_config(
        {
            "client": {"base_url": host.origin, "session": session},
            "resources": [{"name": "posts", "endpoint": {"path": "posts", "paginator": None}}],
        }
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)
    assert table_ids(pipeline, "posts") == [1, 2]
    assert sent == [f"{host.origin}/posts"]
    assert isinstance(session.get_adapter(host.origin), PacedAdapter)


def _users(host: Host, path: str, query: dict[str, list[str]]):
    del host
    page = int(query.get("page", ["1"])[0])
    if path == "/users":
        rows = [{"id": page * 10 + i} for i in range(2)] if page <= 2 else []
        return json_page(rows, total_pages=2)
    return 200, {}, json.dumps({"id": int(path.split("/")[2]), "page": page}).encode()


def test_endpoint_without_a_paginator_pages_with_the_clients(hosts, tmp_path):
    # `"paginator": None` on the endpoint means the client's, as in dlt; a single-entity
    # child (`users/{id}`) reads one page, as dlt's single-page paginator does
    host = hosts("127.0.0.1", _users)
    paginator = {"type": "page_number", "total_path": "total_pages", "prefetch": 0}
    source = support_api_from_config(
        {
            "client": {"base_url": host.origin, "paginator": paginator},
            "resources": [
                {"name": "users", "endpoint": {"path": "users", "paginator": None}},
                {"name": "user", "endpoint": {"path": "users/{resources.users.id}"}},
            ],
        }
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)
    assert table_ids(pipeline, "users") == [10, 11, 20, 21]
    assert table_ids(pipeline, "user") == [10, 11, 20, 21]
    assert sorted((seen.path, seen.query.get("page")) for seen in host.seen) == [
        ("/users", ["1"]),
        ("/users", ["2"]),
        *((f"/users/{i}", None) for i in (10, 11, 20, 21)),
    ]


def _echo_not_found(host: Host, path: str, query: dict[str, list[str]]):
    del host, path
    return 404, {}, json.dumps({"error": f"no post for key {query['api_key'][0]}"}).encode()


def test_status_error_masks_secret_query_values_the_body_echoes(hosts, tmp_path):
    # plain dlt quotes no body; this source quotes its start, with every secret masked
    host = hosts("127.0.0.1", _echo_not_found)
    params = {"api_key": "secret_api_key_xyz", "normal_param": "public_value"}
    source = support_api_from_config(
        {
            "client": {"base_url": host.origin},
            "resources": [{"name": "posts", "endpoint": {"path": "posts", "params": params}}],
        }
    )
    with pytest.raises(PipelineStepFailed) as failure:
        make_pipeline(tmp_path).run(source)
    assert "secret_api_key_xyz" not in str(failure.value)
    assert "api_key=***" in str(failure.value)
    assert "normal_param=public_value" in str(failure.value)
    assert "no post for key" in str(failure.value)
