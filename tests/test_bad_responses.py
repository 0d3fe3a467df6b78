"""Bad responses give typed errors naming resource and redacted URL; nothing is committed."""

from __future__ import annotations

import json

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import ResponseError, support_api
from tests.helpers import find_cause, make_pipeline, table_ids
from tests.sandbox import Fault


@pytest.fixture
def desk(sandbox_factory):
    return sandbox_factory(seed=4, size=80, shape="desk", auth="api_key_query")


def source(server, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(base_url=server.url, credentials=credentials, **kwargs)


def failed_run(server, tmp_path, resource):
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(source(server, resources=[resource]))
    error = find_cause(failure.value, ResponseError)
    assert isinstance(error, ResponseError), failure.value
    message = str(failure.value)
    assert f"`{resource}`" in str(error)
    assert "api_key=***" in str(error) or "api_key=%2A%2A%2A" in str(error)
    assert server.secrets.api_key not in message
    assert resource not in str(pipeline.state.get("sources", {}))
    return error


def test_html_page_with_status_200_is_a_clear_error_not_retried(desk, tmp_path, retry_sleeps):
    page = "<!DOCTYPE html><html><body>" + "Please sign in. " * 500 + "</body></html>"
    desk.inject("/v1/groups", [Fault(status=200, body=page, headers={"Content-Type": "text/html"})])
    error = failed_run(desk, tmp_path, "groups")
    assert "HTML page" in str(error)
    assert len(str(error)) < 600, "the body must be truncated"
    assert retry_sleeps == []
    assert desk.count(path="/v1/groups") == 1


def test_malformed_body_is_retried_then_loads(desk, tmp_path, retry_sleeps):
    desk.inject("/v1/brands", [Fault(kind="malformed")])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["brands"]))
    assert retry_sleeps == [2]
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))


def test_body_that_stays_malformed_fails_after_retries(desk, tmp_path, retry_sleeps):
    desk.inject("/v1/brands", [Fault(kind="malformed")] * 4)
    error = failed_run(desk, tmp_path, "brands")
    assert "not valid JSON" in str(error)
    assert retry_sleeps == [2, 4, 8]


def test_missing_data_selector_fails_instead_of_loading_nothing(desk, tmp_path):
    body = json.dumps({"results": [{"id": 1}], "next_cursor": None})
    desk.inject("/v1/agents", [Fault(status=200, body=body)])
    error = failed_run(desk, tmp_path, "agents")
    assert "`data`" in str(error)
    assert "results" in str(error)
