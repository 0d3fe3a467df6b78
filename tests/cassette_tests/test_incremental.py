"""Incremental loading through the catalogue source, and API-key / bearer credentials redacted."""

from __future__ import annotations

import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth

from sources.support_api import support_api
from tests.cassette_tests.cassette_support import exchanges
from tests.helpers import loaded_counts, make_pipeline, table_ids, table_rows

pytestmark = pytest.mark.vcr

SEED = 11
PAGE = 25


def query_key_source(api, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=api.secrets.api_key, location="query")
    return support_api(
        base_url=api.url, credentials=credentials, page_size=PAGE, concurrency=1, **kwargs
    )


def test_second_run_asks_from_the_last_cursor_and_loads_only_changed_rows(
    sandbox_api, vcr, tmp_path
):
    api = sandbox_api(seed=SEED, size=80, shape="desk", auth="api_key_query")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(query_key_source(api, resources=["customers"]))
    assert loaded_counts(pipeline) == {"customers": 40}
    last_seen = api.dataset.max_updated_at("customers")
    changes = api.dataset.mutate(updates=3, creates=2, tables=["customers"], seed=1)["customers"]

    pipeline.run(query_key_source(api, resources=["customers"]))

    assert loaded_counts(pipeline) == {"customers": 5}
    pages = exchanges(vcr, "/v1/customers")
    assert len(pages) == len(vcr.data) == 3
    assert [p.query["updated_since"] for p in pages] == [
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:00:00Z",  # the second page carries the first page's filter
        last_seen,
    ]
    assert "cursor" in pages[1].query
    assert "cursor" not in pages[2].query
    # the last row seen is served again (inclusive bound) and merged, not loaded twice
    assert [len(p.body["data"]) for p in pages] == [25, 15, 6]
    assert {p.query["api_key"] for p in pages} == {"REDACTED-api-key-1"}
    assert table_ids(pipeline, "customers") == sorted(api.dataset.ids("customers"))
    loaded = dict(table_rows(pipeline, "customers", "id, updated_at"))
    for row_id in (*changes.updated_ids, *changes.created_ids):
        expected = api.dataset.get("customers", row_id)["updated_at"]
        assert loaded[row_id].strftime("%Y-%m-%dT%H:%M:%SZ") == expected


@pytest.mark.parametrize("auth", ["api_key_header", "bearer"])
def test_header_credentials_load_every_page(sandbox_api, vcr, tmp_path, auth):
    api = sandbox_api(seed=SEED, size=80, shape="desk", auth=auth)
    credentials: APIKeyAuth | BearerTokenAuth
    if auth == "bearer":
        credentials = BearerTokenAuth(token=api.secrets.bearer_token)
    else:
        credentials = APIKeyAuth(name="X-API-Key", api_key=api.secrets.api_key, location="header")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(
        support_api(
            base_url=api.url,
            credentials=credentials,
            page_size=PAGE,
            resources=["organizations"],
            concurrency=1,
        )
    )

    assert table_ids(pipeline, "organizations") == sorted(api.dataset.ids("organizations"))
    (page,) = exchanges(vcr)
    if auth == "bearer":
        assert page.headers["Authorization"] == "Bearer REDACTED-bearer-1"
    else:
        assert page.headers["X-API-Key"] == "REDACTED-api-key-1"
