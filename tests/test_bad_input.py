"""Bad input: malformed config, bad responses and bad credentials, one test per case.

Completes `test_config.py` (seed-config key paths), `test_bad_responses.py` (HTML page, a body
that stays malformed, a missing data selector) and `test_paginators.py` (a repeating cursor or
link). Every case here checks the whole contract:

- the typed error (`ConfigError`, `ResponseError`, `HTTPStatusError`, `PaginationError`,
  `AuthenticationError`) found in the exception chain,
- the config key path or the resource name, and the URL with secrets redacted,
- no credential anywhere in the exception chain nor in the captured logs (INFO and up) and no
  whole response body (bodies are cut),
- nothing committed: no incremental state for the resource and no row of it in the destination.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth

from sources.support_api import (
    AuthenticationError,
    ConfigError,
    HTTPStatusError,
    OAuth2RefreshTokenAuth,
    PaginationError,
    ResponseError,
    support_api,
    support_api_from_config,
)
from sources.support_api.errors import MAX_BODY_IN_ERROR
from tests.helpers import chain_text, find_cause, make_pipeline, table_ids
from tests.sandbox import SECRET_PREFIXES, Fault, Route

CONFIG_SECRET = "sbxkey-config-secret-0123456789"
API_KEY = APIKeyAuth(name="api_key", api_key=CONFIG_SECRET, location="query")
REDACTED_KEY = ("api_key=***", "api_key=%2A%2A%2A")


# --- helpers -------------------------------------------------------------------------------------


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
    leaked = [prefix for prefix in SECRET_PREFIXES if prefix in text]
    assert not leaked, f"credentials with prefixes {leaked} leaked"


def destination_rows(pipeline, table: str) -> int:
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return 0
        qualified = client.make_qualified_table_name(table)
        try:
            rows = client.execute_sql(f"SELECT COUNT(*) FROM {qualified}")  # noqa: S608 - test names
        except DatabaseUndefinedRelation:
            return 0
        return int(rows[0][0]) if rows else 0


def assert_nothing_committed(pipeline, resource: str) -> None:
    resources = pipeline.state.get("sources", {}).get("support_api", {}).get("resources", {})
    assert "incremental" not in resources.get(resource, {}), resources
    assert destination_rows(pipeline, resource) == 0


def failed_run(pipeline, source, kind: type[BaseException], caplog, *secrets: str) -> Any:
    """Runs `source`, expects `kind` in the failure, checks secrets in errors and logs."""
    caplog.set_level(logging.INFO)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(source)
    error = find_cause(failure.value, kind)
    assert isinstance(error, kind), failure.value
    assert_no_secret(chain_text(failure.value), *secrets)
    assert_no_secret(caplog.text, *secrets)
    return error


def config_error(call, *secrets: str) -> ConfigError:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - dlt may wrap the source's error
        call()
    error = find_cause(raised.value, ConfigError)
    assert isinstance(error, ConfigError), raised.value
    assert_no_secret(chain_text(raised.value), CONFIG_SECRET, *secrets)
    return error


@pytest.fixture
def desk(sandbox_factory):
    return sandbox_factory(seed=41, size=40, shape="desk", auth="api_key_query")


def key_source(server, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(base_url=server.url, credentials=credentials, **kwargs)


def refused_run(
    server, tmp_path, caplog, resource: str, kind: type[BaseException] = ResponseError
) -> tuple[Any, Any]:
    """Runs one resource of `server` into a new pipeline and expects `kind` to stop it.

    Returns:
        The pipeline and the error (no secret in it nor in the logs).
    """
    pipeline = make_pipeline(tmp_path)
    source = key_source(server, resources=[resource])
    return pipeline, failed_run(pipeline, source, kind, caplog, server.secrets.api_key)


def assert_redacted_url(error, server, path: str) -> None:
    text = str(error)
    assert f"{server.url}{path}" in text
    assert any(marker in text for marker in REDACTED_KEY), text


# --- malformed config: the source's arguments ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key_path", "words"),
    [
        ({"resources": 42}, "resources", "list of resource names"),
        ({"resources": [["tickets"]]}, "resources", "list of resource names"),
        ({"page_size": "100"}, "page_size", "integer"),
        ({"page_size": True}, "page_size", "integer"),
        ({"page_size": 10_001}, "page_size", "<= 10000"),
        ({"lookback_seconds": 1.5}, "lookback_seconds", "integer"),
        ({"start_date": "yesterday"}, "start_date", "ISO-8601"),
        ({"end_date": "2024-13-01"}, "end_date", "ISO-8601"),
        (
            {"start_date": "2024-02-01T00:00:00Z", "end_date": "2024-01-01T00:00:00Z"},
            "end_date",
            "not later than start_date",
        ),
        ({"endpoints": {"tickets": "x"}}, "endpoints.tickets", "table of overrides"),
        ({"endpoints": {"tickets": {"path": 5}}}, "endpoints.tickets.path", "string"),
        (
            {"endpoints": {"tickets": {"paginator": {"type": "cursor", "limit": "10"}}}},
            "endpoints.tickets.paginator.limit",
            "positive integer",
        ),
        (
            {"endpoints": {"tickets": {"paginator": {"type": "page_number", "page_size": -1}}}},
            "endpoints.tickets.paginator.page_size",
            "positive integer",
        ),
        ({"endpoints": {"tickets": {"paginator": 5}}}, "endpoints.tickets.paginator", "mapping"),
        (
            {"endpoints": {"tickets": {"error_handler": {"timeout": 0}}}},
            "endpoints.tickets.error_handler.timeout",
            "> 0",
        ),
        ({"error_handler": {"max_retries": "3"}}, "error_handler.max_retries", "integer"),
        (
            {"error_handler": {"retry_on_status_codes": [700]}},
            "error_handler.retry_on_status_codes",
            "100-599",
        ),
        ({"error_handler": [429]}, "error_handler", "mapping"),
        ({"base_url": "http://"}, "client.base_url", "absolute http(s) URL"),
        ({"base_url": ""}, "client.base_url", "URL"),
    ],
    ids=[
        "resources-not-a-list",
        "resources-nested-list",
        "page_size-text",
        "page_size-bool",
        "page_size-over-max",
        "lookback-float",
        "start_date-not-a-date",
        "end_date-bad-month",
        "end_date-before-start",
        "endpoint-not-a-table",
        "endpoint-path-int",
        "cursor-limit-text",
        "page_size-negative",
        "paginator-int",
        "timeout-zero",
        "max_retries-text",
        "status-code-700",
        "error_handler-list",
        "base_url-no-host",
        "base_url-empty",
    ],
)
def test_bad_source_argument(sandbox_factory, kwargs, key_path, words):
    server = sandbox_factory(seed=41, size=5, shape="desk", auth="api_key_query")
    arguments = {"base_url": server.url, "credentials": API_KEY, **kwargs}
    error = config_error(lambda: support_api(**arguments))
    assert error.key_path == key_path
    assert words in str(error)
    assert server.count() == 0, "config errors come before any request"


def test_a_secret_in_a_bad_base_url_is_not_printed():
    url = f"ftp://api.example.com/v1?api_key={CONFIG_SECRET}"
    error = config_error(lambda: support_api(base_url=url, credentials=API_KEY))
    assert error.key_path == "client.base_url"
    assert "ftp://api.example.com/v1" in str(error)


# --- malformed config: seed dicts ---------------------------------------------------------------


def seed(**client: Any) -> dict[str, Any]:
    return {
        "client": {"base_url": "http://127.0.0.1:9", **client},
        "resources": [{"name": "tickets", "endpoint": {"path": "/v1/tickets"}}],
    }


@pytest.mark.parametrize(
    ("config", "key_path"),
    [
        ({"client": "http://127.0.0.1:9", "resources": ["tickets"]}, "client"),
        ({**seed(), "resources": "tickets"}, "resources"),
        ({**seed(), "resources": [{"name": "tickets", "endpoint": 5}]}, "resources[0].endpoint"),
        (
            seed(auth={"type": "oauth2", "client_id": "c", "client_secret": CONFIG_SECRET}),
            "client.auth.token_url",
        ),
        (
            seed(
                auth={
                    "type": "oauth2",
                    "client_id": "c",
                    "client_secret": CONFIG_SECRET,
                    "token_url": "https://127.0.0.1:9/oauth/token",
                    "refresh_tokn": CONFIG_SECRET,
                }
            ),
            "client.auth.refresh_tokn",
        ),
        (
            {
                **seed(),
                "resources": [
                    {
                        "name": "tickets",
                        "endpoint": {"paginator": {"type": "page_number", "page_size": 0}},
                    }
                ],
            },
            "resources[0].endpoint.paginator.page_size",
        ),
        (
            {
                **seed(),
                "resource_defaults": {"endpoint": {"error_handler": {"backoff_factor": -1}}},
            },
            "resource_defaults.endpoint.error_handler.backoff_factor",
        ),
    ],
    ids=[
        "client-not-a-table",
        "resources-a-string",
        "endpoint-int",
        "oauth2-no-token_url",
        "oauth2-unknown-key",
        "page_size-zero",
        "backoff-negative",
    ],
)
def test_bad_seed_config(config, key_path):
    error = config_error(lambda: support_api_from_config(config))
    assert error.key_path == key_path


# --- bad responses ------------------------------------------------------------------------------


def test_plain_text_body_with_200_fails_after_retries_quoting_a_cut_body(
    desk, tmp_path, caplog, retry_sleeps
):
    text = "Service temporarily unavailable, " * 200
    fault = Fault(status=200, body=text, headers={"Content-Type": "text/plain"})
    desk.inject("/v1/groups", [fault] * 4)
    pipeline, error = refused_run(desk, tmp_path, caplog, "groups")
    assert "`groups`" in str(error)
    assert "not valid JSON" in str(error)
    assert_redacted_url(error, desk, "/v1/groups")
    assert len(str(error)) < len(text) / 4
    assert "more characters" in str(error)
    assert retry_sleeps == [2, 4, 8]
    assert_nothing_committed(pipeline, "groups")


def test_empty_body_with_200_fails_after_retries(desk, tmp_path, caplog, retry_sleeps):
    desk.inject("/v1/brands", [Fault(status=200, body="")] * 4)
    pipeline, error = refused_run(desk, tmp_path, caplog, "brands")
    assert "`brands`" in str(error)
    assert "0 bytes" in str(error)
    assert_redacted_url(error, desk, "/v1/brands")
    assert len(retry_sleeps) == 3
    assert_nothing_committed(pipeline, "brands")


def test_a_top_level_json_list_instead_of_an_object_names_the_selector(desk, tmp_path, caplog):
    desk.inject("/v1/agents", [Fault(status=200, body=json.dumps([{"id": 1}]))])
    pipeline, error = refused_run(desk, tmp_path, caplog, "agents")
    assert "`agents`" in str(error)
    assert "`data`" in str(error)
    assert "list" in str(error)
    assert_redacted_url(error, desk, "/v1/agents")
    assert_nothing_committed(pipeline, "agents")


def test_html_error_page_with_500_is_retried_then_quoted_cut(desk, tmp_path, caplog, retry_sleeps):
    page = "<html><body>" + "<p>Internal error, request id abc</p>" * 300 + "</body></html>"
    fault = Fault(status=500, body=page, headers={"Content-Type": "text/html"})
    desk.inject("/v1/groups", [fault] * 4)
    pipeline, error = refused_run(desk, tmp_path, caplog, "groups", HTTPStatusError)
    assert error.status_code == 500
    assert "`groups`" in str(error)
    assert_redacted_url(error, desk, "/v1/groups")
    assert len(str(error)) < 200 + MAX_BODY_IN_ERROR * 2
    assert retry_sleeps == [2, 4, 8]
    assert_nothing_committed(pipeline, "groups")


def page_body(server, table: str, start: int, count: int, cursor: str | None) -> str:
    rows = server.dataset.window(table, count, offset=start).rows
    return json.dumps({"data": rows, "next_cursor": cursor})


def test_html_page_on_page_two_commits_nothing_from_page_one(desk, tmp_path, caplog):
    page = "<!DOCTYPE html><html><body>Please sign in</body></html>"
    desk.inject(
        "/v1/tickets",
        [
            Fault(status=200, body=page_body(desk, "tickets", 0, 10, "page-2")),
            Fault(status=200, body=page, headers={"Content-Type": "text/html"}),
        ],
    )
    pipeline = make_pipeline(tmp_path)
    # one walk: the scripted answers go to the requests in order, and a time window split off
    # after page one could take the HTML page instead of the request for page two
    source = key_source(desk, resources=["tickets"], page_size=10, concurrency=1)
    error = failed_run(pipeline, source, ResponseError, caplog, desk.secrets.api_key)
    assert "HTML page" in str(error)
    assert "`tickets`" in str(error)
    assert "cursor=page-2" in str(error)
    assert_redacted_url(error, desk, "/v1/tickets")
    assert_nothing_committed(pipeline, "tickets")


def test_a_cursor_that_repeats_on_a_catalogue_resource_commits_nothing(desk, tmp_path, caplog):
    desk.inject(
        "/v1/tickets",
        [
            Fault(status=200, body=page_body(desk, "tickets", 0, 10, "same")),
            Fault(status=200, body=page_body(desk, "tickets", 10, 10, "same")),
        ],
    )
    pipeline = make_pipeline(tmp_path)
    # one walk, so the request count is exact (time windows would add requests of their own)
    source = key_source(desk, resources=["tickets"], page_size=10, concurrency=1)
    error = failed_run(pipeline, source, PaginationError, caplog, desk.secrets.api_key)
    assert "same cursor twice" in str(error)
    assert_redacted_url(error, desk, "/v1/tickets")
    assert desk.count(path="/v1/tickets") == 2
    assert_nothing_committed(pipeline, "tickets")


def test_a_data_selector_holding_an_object_is_refused(desk, tmp_path, caplog):
    body = {"data": {"id": 1, "updated_at": "2024-01-01T00:00:00Z"}, "next_cursor": None}
    desk.inject("/v1/agents", [Fault(status=200, body=json.dumps(body))])
    pipeline, error = refused_run(desk, tmp_path, caplog, "agents")
    assert "`agents`" in str(error)
    assert "`data`" in str(error)
    assert_nothing_committed(pipeline, "agents")


def test_a_data_selector_holding_a_string_is_refused(desk, tmp_path, caplog):
    desk.inject("/v1/agents", [Fault(status=200, body=json.dumps({"data": "maintenance"}))])
    pipeline, error = refused_run(desk, tmp_path, caplog, "agents")
    assert "`agents`" in str(error)
    assert_redacted_url(error, desk, "/v1/agents")
    assert_nothing_committed(pipeline, "agents")


def records_with(server, table: str, change: dict[str, Any]) -> str:
    rows = server.dataset.window(table, 5).rows
    rows[2].update(change)
    return json.dumps({"data": rows, "next_cursor": None})


def test_a_record_without_its_primary_key_is_refused_at_extract(desk, tmp_path, caplog):
    desk.inject("/v1/agents", [Fault(status=200, body=records_with(desk, "agents", {"id": None}))])
    pipeline, error = refused_run(desk, tmp_path, caplog, "agents")
    assert "`agents`" in str(error)
    assert_redacted_url(error, desk, "/v1/agents")
    assert_nothing_committed(pipeline, "agents")
    assert not pipeline.has_pending_data


def test_a_record_without_its_cursor_value_is_refused_with_a_typed_error(desk, tmp_path, caplog):
    body = records_with(desk, "agents", {"updated_at": None})
    desk.inject("/v1/agents", [Fault(status=200, body=body)])
    pipeline, error = refused_run(desk, tmp_path, caplog, "agents")
    assert_nothing_committed(pipeline, "agents")
    assert not pipeline.has_pending_data
    assert "`agents`" in str(error)
    assert "updated_at" in str(error)
    assert_redacted_url(error, desk, "/v1/agents")


def total_sandbox(sandbox_factory, total_error: int):
    route = Route("/v1/tickets", "tickets", "offset", include_total=True, total_error=total_error)
    return sandbox_factory(seed=41, size=80, routes=[route], auth="api_key_query")


OFFSET_WITH_TOTAL = {
    "tickets": {"paginator": {"type": "offset", "limit": 25, "total_path": "total"}}
}


def test_a_total_higher_than_the_rows_still_loads_every_row_once(sandbox_factory, tmp_path):
    server = total_sandbox(sandbox_factory, total_error=500)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(key_source(server, resources=["tickets"], endpoints=OFFSET_WITH_TOTAL))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))


def test_a_total_lower_than_the_rows_served_is_detected(sandbox_factory, tmp_path, caplog):
    server = total_sandbox(sandbox_factory, total_error=-20)
    pipeline = make_pipeline(tmp_path)
    source = key_source(server, resources=["tickets"], endpoints=OFFSET_WITH_TOTAL)
    error = failed_run(pipeline, source, PaginationError, caplog, server.secrets.api_key)
    assert "total" in str(error)
    assert_redacted_url(error, server, "/v1/tickets")
    assert_nothing_committed(pipeline, "tickets")


def test_a_total_ending_on_a_full_page_is_verified(sandbox_factory, tmp_path):
    server = total_sandbox(sandbox_factory, total_error=-30)
    pipeline = make_pipeline(tmp_path)
    failure: PipelineStepFailed | None = None
    try:
        pipeline.run(key_source(server, resources=["tickets"], endpoints=OFFSET_WITH_TOTAL))
    except PipelineStepFailed as exc:
        failure = exc
    if failure is None:  # loaded correctly: every row
        assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    else:  # or failed clearly, committing nothing
        assert isinstance(find_cause(failure, PaginationError), PaginationError)
        assert_nothing_committed(pipeline, "tickets")


def test_an_honest_total_loads_every_row(sandbox_factory, tmp_path):
    server = total_sandbox(sandbox_factory, total_error=0)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(key_source(server, resources=["tickets"], endpoints=OFFSET_WITH_TOTAL))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))


def test_a_huge_page_beyond_the_page_size_loads_every_row(sandbox_factory, tmp_path):
    server = sandbox_factory(
        seed=41, size=5, table_sizes={"agents": 20_000}, shape="desk", auth="api_key_query"
    )
    body = page_body(server, "agents", 0, 20_000, None)
    server.inject("/v1/agents", [Fault(status=200, body=body)])
    pipeline = make_pipeline(tmp_path)
    pipeline.run(key_source(server, resources=["agents"], page_size=100))
    assert server.requests(path="/v1/agents")[0].query["limit"] == "100"
    assert table_ids(pipeline, "agents") == list(range(1, 20_001))


# --- bad credentials ----------------------------------------------------------------------------


@pytest.fixture
def oauth_desk(sandbox_factory, insecure_loopback_oauth):
    return sandbox_factory(seed=43, size=40, shape="desk", auth="oauth2")


def refresh_auth(server, tmp_path, **overrides) -> OAuth2RefreshTokenAuth:
    settings = {
        "token_url": server.url_for("/oauth/token"),
        "client_id": server.secrets.client_id,
        "client_secret": server.secrets.client_secret,
        "refresh_token": server.secrets.refresh_token,
        "token_store_path": str(tmp_path / "tokens.json"),
        **overrides,
    }
    return OAuth2RefreshTokenAuth(**settings)


def oauth_source(server, auth):
    return support_api(base_url=server.url, credentials=auth, resources=["agents"])


def test_401_from_the_token_endpoint_is_not_retried(oauth_desk, tmp_path, caplog, retry_sleeps):
    wrong = "sbxsecret-not-the-right-one-0000"
    auth = refresh_auth(oauth_desk, tmp_path, client_secret=wrong)
    pipeline = make_pipeline(tmp_path)
    error = failed_run(pipeline, oauth_source(oauth_desk, auth), AuthenticationError, caplog, wrong)
    message = str(error)
    assert "HTTP 401 invalid_client" in message
    assert "sources.support_api.credentials" in message
    assert oauth_desk.url_for("/oauth/token") in message
    assert retry_sleeps == []
    assert oauth_desk.token_requests == {"refresh_token": 1}
    assert oauth_desk.count(path="/v1/agents") == 0
    assert_nothing_committed(pipeline, "agents")


def test_a_token_endpoint_echoing_the_secret_is_redacted(oauth_desk, tmp_path, caplog):
    secret = oauth_desk.secrets.client_secret
    body = json.dumps(
        {"error": "invalid_client", "error_description": f"client_secret={secret} is not known"}
    )
    oauth_desk.inject("/oauth/token", [Fault(status=401, body=body)])
    pipeline = make_pipeline(tmp_path)
    error = failed_run(
        pipeline,
        oauth_source(oauth_desk, refresh_auth(oauth_desk, tmp_path)),
        AuthenticationError,
        caplog,
        secret,
    )
    assert "invalid_client" in str(error)
    assert "is not known" in str(error)
    assert oauth_desk.url_for("/oauth/token") in str(error)
    assert_nothing_committed(pipeline, "agents")


def test_invalid_grant_says_to_issue_a_new_refresh_token(
    oauth_desk, tmp_path, caplog, retry_sleeps
):
    oauth_desk.revoke_refresh_token()
    pipeline = make_pipeline(tmp_path)
    error = failed_run(
        pipeline,
        oauth_source(oauth_desk, refresh_auth(oauth_desk, tmp_path)),
        AuthenticationError,
        caplog,
        oauth_desk.secrets.refresh_token,
    )
    message = str(error)
    assert "invalid_grant" in message
    assert "Issue a new refresh token" in message
    assert "sources.support_api.credentials.refresh_token" in message
    assert oauth_desk.url_for("/oauth/token") in message
    assert retry_sleeps == []
    assert_nothing_committed(pipeline, "agents")


def test_a_200_from_the_token_endpoint_that_is_not_a_token(oauth_desk, tmp_path, caplog):
    page = "<html><body>Welcome to the login portal</body></html>"
    oauth_desk.inject(
        "/oauth/token", [Fault(status=200, body=page, headers={"Content-Type": "text/html"})]
    )
    pipeline = make_pipeline(tmp_path)
    error = failed_run(
        pipeline,
        oauth_source(oauth_desk, refresh_auth(oauth_desk, tmp_path)),
        AuthenticationError,
        caplog,
    )
    assert oauth_desk.url_for("/oauth/token") in str(error)
    assert_nothing_committed(pipeline, "agents")


def test_a_plain_http_token_url_on_a_remote_host_is_refused_before_any_request(
    oauth_desk, tmp_path, caplog
):
    auth = refresh_auth(oauth_desk, tmp_path, token_url="http://auth.example.com/oauth/token")
    pipeline = make_pipeline(tmp_path)
    error = failed_run(pipeline, oauth_source(oauth_desk, auth), AuthenticationError, caplog)
    assert "must use https" in str(error)
    assert "http://auth.example.com/oauth/token" in str(error)
    assert oauth_desk.count() == 0
    assert_nothing_committed(pipeline, "agents")


def test_a_wrong_api_key_is_a_401_naming_the_resource(desk, tmp_path, caplog, retry_sleeps):
    wrong = "sbxkey-wrong-wrong-wrong-0000000"
    credentials = APIKeyAuth(name="api_key", api_key=wrong, location="query")
    source = support_api(base_url=desk.url, credentials=credentials, resources=["brands"])
    pipeline = make_pipeline(tmp_path)
    error = failed_run(pipeline, source, HTTPStatusError, caplog, wrong)
    assert error.status_code == 401
    assert "`brands`" in str(error)
    assert_redacted_url(error, desk, "/v1/brands")
    assert "credentials were refused" in str(error)
    assert retry_sleeps == []
    assert_nothing_committed(pipeline, "brands")


def test_a_wrong_bearer_token_is_a_401_without_the_token(sandbox_factory, tmp_path, caplog):
    server = sandbox_factory(seed=41, size=10, shape="desk", auth="bearer")
    wrong = "sbxbearer-wrong-wrong-wrong-00000"
    source = support_api(
        base_url=server.url, credentials=BearerTokenAuth(token=wrong), resources=["groups"]
    )
    pipeline = make_pipeline(tmp_path)
    error = failed_run(pipeline, source, HTTPStatusError, caplog, wrong)
    assert error.status_code == 401
    assert "`groups`" in str(error)
    # the settle bound (`updated_before`) is a minute before now
    assert re.fullmatch(
        re.escape(f"{server.url}/v1/groups?updated_since=2000-01-01T00%3A00%3A00Z")
        + r"&updated_before=\d{4}-\d\d-\d\dT\d\d%3A\d\d%3A\d\dZ&limit=100",
        error.url,
    ), error.url
    assert_nothing_committed(pipeline, "groups")


def test_debug_logs_never_show_a_query_api_key(desk, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(key_source(desk, resources=["brands"]))
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))
    assert desk.secrets.api_key not in caplog.text
