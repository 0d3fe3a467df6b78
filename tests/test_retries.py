"""Retries: statuses, backoff factor 2, Retry-After with a cap, per-endpoint error handlers."""

from __future__ import annotations

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import HTTPStatusError, support_api
from tests.helpers import find_cause, make_pipeline, table_ids
from tests.sandbox import Fault


@pytest.fixture
def desk(sandbox_factory):
    return sandbox_factory(seed=2, size=60, shape="desk", auth="api_key_header")


def source(server, **kwargs):
    credentials = APIKeyAuth(name="X-API-Key", api_key=server.secrets.api_key, location="header")
    return support_api(base_url=server.url, credentials=credentials, **kwargs)


def test_transient_statuses_are_retried_with_exponential_backoff(desk, tmp_path, retry_sleeps):
    desk.inject("/v1/groups", [Fault(status=500), Fault(status=502), Fault(status=504)])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["groups"]))
    assert retry_sleeps == [2, 4, 8]
    assert table_ids(pipeline, "groups") == sorted(desk.dataset.ids("groups"))


def test_retry_after_is_honoured_and_capped(desk, tmp_path, retry_sleeps):
    desk.inject(
        "/v1/agents",
        [Fault(status=429, retry_after=7), Fault(status=503, retry_after=10_000)],
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["agents"], error_handler={"max_retry_delay": 30}))
    assert retry_sleeps == [7, 30]
    assert table_ids(pipeline, "agents") == sorted(desk.dataset.ids("agents"))


def test_dropped_connection_is_retried(desk, tmp_path, retry_sleeps):
    desk.inject("/v1/brands", [Fault(kind="drop")])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["brands"]))
    assert retry_sleeps == [2]
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))


def test_retries_run_out_after_three_and_nothing_is_committed(desk, tmp_path, retry_sleeps):
    desk.inject("/v1/groups", [Fault(status=503)] * 4)
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(source(desk, resources=["groups"]))
    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 503
    assert "after 3 retries" in str(error)
    assert retry_sleeps == [2, 4, 8]
    assert desk.count(path="/v1/groups") == 4
    assert "groups" not in str(pipeline.state.get("sources", {}))


def test_per_endpoint_error_handler_from_config(desk, tmp_path, retry_sleeps, monkeypatch):
    monkeypatch.setenv(
        "SOURCES__SUPPORT_API__ENDPOINTS",
        '{"groups": {"error_handler": {"retry_on_status_codes": [429, 500, 502, 503],'
        ' "max_retries": 1, "backoff_factor": 1}}}',
    )
    desk.inject("/v1/groups", [Fault(status=504)])
    desk.inject("/v1/brands", [Fault(status=504)])
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(source(desk, resources=["groups"]))
    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 504
    assert "not retried" in str(error)
    assert desk.count(path="/v1/groups") == 1
    pipeline.run(source(desk, resources=["brands"]))
    assert retry_sleeps == [2]
