"""Every request knob of a catalogue endpoint is settable from config, and none is ignored.

`[sources.support_api.endpoints.<name>]` takes `params`, `headers`, `method`, `json` and
`response_actions` as a rest_api endpoint does, and the page size reaches next-link APIs
through `limit_param`. A page size a paginator cannot send is an error naming what would
work, not a setting silently dropped.
"""

from __future__ import annotations

from typing import Any

import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import ConfigError, support_api
from tests.fake_api import Host, json_page, loopback_hosts
from tests.helpers import make_pipeline, table_ids
from tests.sandbox import Route


def desk_auth(server: Any) -> APIKeyAuth:
    return APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")


hosts = loopback_hosts
"""The fake APIs of a test (a fixture)."""

JSON_LINK = {"type": "json_link", "next_url_path": "next", "limit_param": "page_size"}


def test_a_next_link_api_gets_its_page_size_from_config(sandbox_factory, tmp_path):
    routes = [Route("/v1/tickets", "tickets", "json_link", page_size_param="page_size")]
    server = sandbox_factory(seed=3, size=1200, routes=routes, auth="api_key_query")
    source = support_api(
        base_url=server.url,
        credentials=desk_auth(server),
        resources=["tickets"],
        page_size=500,
        endpoints={"tickets": {"paginator": JSON_LINK, "updated_before_param": None}},
    )
    pipeline = make_pipeline(tmp_path)

    pipeline.run(source)

    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    requests = server.requests(path="/v1/tickets")
    assert requests[0].query["page_size"] == "500"
    assert len(requests) == 3  # 1,200 tickets at 500 a page, not 12 pages of 100


@pytest.mark.parametrize("kind", ["json_link", "header_link", "header_cursor"])
def test_a_page_size_a_paginator_cannot_send_names_what_would_work(kind):
    with pytest.raises(ConfigError) as raised:
        support_api(
            base_url="https://api.example.com",
            credentials=APIKeyAuth(name="api_key", api_key="k" * 12, location="query"),
            resources=["tickets"],
            page_size=1000,
            endpoints={"tickets": {"paginator": {"type": kind}}},
        )
    assert raised.value.key_path == "endpoints.tickets.paginator.limit_param"
    assert "page_size" in str(raised.value)


def test_without_a_page_size_a_next_link_walk_asks_for_none(sandbox_factory, tmp_path):
    # the source's default page size goes where a paginator can send it, and nowhere else
    routes = [Route("/v1/tickets", "tickets", "json_link", page_size_param="page_size")]
    server = sandbox_factory(seed=3, size=250, routes=routes, auth="api_key_query")
    source = support_api(
        base_url=server.url,
        credentials=desk_auth(server),
        resources=["tickets"],
        endpoints={"tickets": {"paginator": {"type": "json_link"}, "updated_before_param": None}},
    )

    make_pipeline(tmp_path).run(source)

    first = server.requests(path="/v1/tickets")[0]
    assert "page_size" not in first.query
    assert "limit" not in first.query
    assert len(server.requests(path="/v1/tickets")) == 3  # the API's own 100 a page


def test_a_limit_without_its_parameter_is_refused():
    with pytest.raises(ConfigError) as raised:
        support_api(
            base_url="https://api.example.com",
            credentials=APIKeyAuth(name="api_key", api_key="k" * 12, location="query"),
            resources=["tickets"],
            endpoints={"tickets": {"paginator": {"type": "json_link", "limit": 50}}},
        )
    assert raised.value.key_path == "endpoints.tickets.paginator"
    assert "limit_param" in str(raised.value)


def test_params_headers_and_response_actions_reach_the_request(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=3, size=40, shape="desk", auth="api_key_query")
    source = support_api(
        base_url=server.url,
        credentials=desk_auth(server),
        resources=["tickets", "brands"],
        endpoints={
            "tickets": {
                "params": {"include": "users", "sort": "updated_at"},
                "headers": {"X-Tenant": "acme"},
            },
            # a path the sandbox does not serve: its 404 is ignored, as in a rest_api endpoint
            "brands": {
                "path": "/v1/no-such-brands",
                "response_actions": [{"status_code": 404, "action": "ignore"}],
            },
        },
    )
    pipeline = make_pipeline(tmp_path)

    pipeline.run(source)

    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    first = server.requests(path="/v1/tickets")[0]
    assert first.query["include"] == "users"
    assert first.query["sort"] == "updated_at"
    assert server.requests(path="/v1/no-such-brands")


def test_headers_and_a_post_body_reach_the_wire(tmp_path, hosts):
    def route(_host: Host, path: str, _query: dict[str, list[str]]):
        assert path == "/v1/tickets/search"
        return json_page([{"id": 1, "updated_at": "2024-01-01T00:00:00Z"}], next_cursor=None)

    api = hosts("127.0.0.1", route)
    source = support_api(
        base_url=api.origin,
        credentials=APIKeyAuth(name="X-API-Key", api_key="k" * 12, location="header"),
        resources=["tickets"],
        endpoints={
            "tickets": {
                "path": "/v1/tickets/search",
                "method": "POST",
                "json": {"filter": {"status": "open"}},
                "headers": {"X-Tenant": "acme"},
                "updated_since_param": None,
                "updated_before_param": None,
            }
        },
    )

    make_pipeline(tmp_path).run(source)

    (request,) = api.seen
    assert request.method == "POST"
    assert request.headers["X-Tenant"] == "acme"
    assert '"status": "open"' in request.body or '"status":"open"' in request.body


@pytest.mark.parametrize(
    ("override", "key_path"),
    [
        ({"params": ["include"]}, "endpoints.tickets.params"),
        ({"params": {"include": {"a": 1}}}, "endpoints.tickets.params.include"),
        ({"headers": {"X-Tenant": 3}}, "endpoints.tickets.headers"),
        ({"method": "DELETE"}, "endpoints.tickets.method"),
        ({"json": "query"}, "endpoints.tickets.json"),
        ({"response_actions": {"status_code": 404}}, "endpoints.tickets.response_actions"),
    ],
)
def test_a_malformed_request_override_names_its_key(override, key_path):
    with pytest.raises(ConfigError) as raised:
        support_api(
            base_url="https://api.example.com",
            credentials=APIKeyAuth(name="api_key", api_key="k" * 12, location="query"),
            resources=["tickets"],
            endpoints={"tickets": override},
        )
    assert raised.value.key_path == key_path
