"""Retry sequences pinned by cassettes: the statuses, the order, and the waits that replay skips.

`retry_sleeps` patches tenacity's sleep, so replay never waits: the tests assert the waits the
retries asked for (2, 4, 8 s for backoff factor 2; the `Retry-After` value when present).
"""

from __future__ import annotations

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import HTTPStatusError, support_api, support_api_from_config
from tests.cassette_tests.cassette_support import exchanges
from tests.helpers import find_cause, make_pipeline, table_ids
from tests.sandbox import Fault

pytestmark = pytest.mark.vcr

DESK_SEED = 2
SEED_003 = 3


@pytest.fixture
def desk(sandbox_api):
    return sandbox_api(seed=DESK_SEED, size=60, shape="desk", auth="api_key_header")


def desk_source(api, **kwargs):
    credentials = APIKeyAuth(name="X-API-Key", api_key=api.secrets.api_key, location="header")
    return support_api(
        base_url=api.url, credentials=credentials, page_size=25, concurrency=1, **kwargs
    )


def statuses(cassette, path):
    return [exchange.status for exchange in exchanges(cassette, path)]


def test_429_waits_the_retry_after_value(desk, vcr, tmp_path, retry_sleeps):
    desk.inject("/v1/agents", [Fault(status=429, retry_after=7)])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["agents"]))

    assert retry_sleeps == [7]
    assert statuses(vcr, "/v1/agents") == [429, 200]
    assert exchanges(vcr)[0].response_headers["Retry-After"] == "7"
    assert table_ids(pipeline, "agents") == sorted(desk.dataset.ids("agents"))


def test_500_then_200_waits_one_backoff_step(desk, vcr, tmp_path, retry_sleeps):
    desk.inject("/v1/groups", [Fault(status=500)])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["groups"]))

    assert retry_sleeps == [2]
    assert statuses(vcr, "/v1/groups") == [500, 200]
    assert table_ids(pipeline, "groups") == sorted(desk.dataset.ids("groups"))


def test_backoff_doubles_2_4_8_before_the_request_succeeds(desk, vcr, tmp_path, retry_sleeps):
    desk.inject("/v1/brands", [Fault(status=500), Fault(status=502), Fault(status=503)])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["brands"]))

    assert retry_sleeps == [2, 4, 8]
    assert statuses(vcr, "/v1/brands") == [500, 502, 503, 200]
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))


def test_503_until_max_retries_is_spent_fails_and_commits_nothing(
    desk, vcr, tmp_path, retry_sleeps
):
    desk.inject("/v1/groups", [Fault(status=503)] * 4)
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(desk_source(desk, resources=["groups"]))

    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPStatusError), failure.value
    assert error.status_code == 503
    assert "after 3 retries" in str(error)
    assert retry_sleeps == [2, 4, 8]
    assert statuses(vcr, "/v1/groups") == [503] * 4
    assert "groups" not in str(pipeline.state.get("sources", {}))


SEED_003_HANDLER = {
    "retry_on_status_codes": [429, 500, 502, 503],
    "max_retries": 3,
    "backoff_factor": 2,
}


def seed_003_config(api):
    """Seed 003's config: client credentials on /oauth/v1/token, nested cursor, no 504 retry."""
    return {
        "client": {
            "base_url": api.url,
            "auth": {
                "type": "oauth2",
                "client_id": api.secrets.client_id,
                "client_secret": api.secrets.client_secret,
                "token_url": api.url_for("/oauth/v1/token"),
            },
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "resource_name",
                "endpoint": {
                    "path": "/v1/resource",
                    "data_selector": "data",
                    "error_handler": SEED_003_HANDLER,
                    "paginator": {
                        "type": "cursor",
                        "limit": 25,
                        "cursor_param": "after",
                        "cursor_path": "paging.next.after",
                    },
                },
            }
        ],
    }


@pytest.fixture
def seed_003(sandbox_api, insecure_loopback_oauth):
    return sandbox_api(seed=SEED_003, size=40, shape="seed003", auth="oauth2")


def test_504_is_not_retried_when_the_error_handler_leaves_it_out(
    seed_003, vcr, tmp_path, retry_sleeps
):
    seed_003.inject("/v1/resource", [Fault(status=504)])
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(support_api_from_config(seed_003_config(seed_003)))

    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPStatusError), failure.value
    assert error.status_code == 504
    assert "not retried" in str(error)
    assert retry_sleeps == []
    assert [(e.method, e.path, e.status) for e in exchanges(vcr)] == [
        ("POST", "/oauth/v1/token", 200),
        ("GET", "/v1/resource", 504),
    ]


def test_the_same_handler_still_retries_503(seed_003, vcr, tmp_path, retry_sleeps):
    seed_003.inject("/v1/resource", [Fault(status=503)])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(seed_003_config(seed_003)))

    assert retry_sleeps == [2]
    assert statuses(vcr, "/v1/resource") == [503, 200, 200]
    assert table_ids(pipeline, "resource_name") == sorted(seed_003.dataset.ids("tickets"))
