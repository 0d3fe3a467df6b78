"""The OAuth2 auth classes against the loopback sandbox, through real dlt pipeline runs.

Each pipeline keeps its state under `tmp_path`; HOME also points into `tmp_path` (see
conftest), so the default token store never touches the real home folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.requests import Client
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import RESTAPIConfig
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter

from sources.support_api.auth import (
    FileTokenStore,
    OAuth2ClientCredentialsAuth,
    OAuth2RefreshTokenAuth,
    OAuth2TokenAuthBase,
    default_token_store_path,
)
from sources.support_api.errors import AuthenticationError
from tests.helpers import find_cause, table_ids
from tests.sandbox import SECRET_PREFIXES, FakeClock, Fault, SandboxServer
from tests.sandbox.fixtures import SandboxFactory
from tests.test_auth import allow_insecure_loopback_token_url

TICKETS = "/v1/tickets"
TOKEN_PATH = "/oauth/token"
SIZE = 60
PAGE_SIZE = 20
CURSOR_PAGINATOR = {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}
# every credential the sandbox hands out starts with one of these, so scanning for the
# prefixes finds any leaked client secret, refresh token or access token (and the client id,
# which is configured as a secret too)
LEAK_MARKERS = SECRET_PREFIXES


@pytest.fixture
def oauth_sandbox(
    sandbox_factory: SandboxFactory, fake_clock: FakeClock
) -> Iterator[SandboxServer]:
    """A desk-shaped sandbox with OAuth2, single-use refresh tokens and 30 s access tokens."""
    server = sandbox_factory(
        auth="oauth2",
        access_token_ttl=30,
        rotate_refresh_tokens=True,
        clock=fake_clock,
        shape="desk",
        size=SIZE,
    )
    with allow_insecure_loopback_token_url(server.url):
        yield server


class TickingAdapter(HTTPAdapter):
    """Real HTTP, but every API response moves the fake clock on: time passes while paging."""

    def __init__(self, clock: FakeClock, seconds_per_response: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds_per_response = seconds_per_response

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        response = super().send(request, *args, **kwargs)
        self.clock.advance(self.seconds_per_response)
        return response


def data_session(server: SandboxServer, clock: FakeClock, seconds_per_response: float) -> Session:
    session = Client(raise_for_status=False).session  # dlt's retrying session
    session.mount(server.url, TickingAdapter(clock, seconds_per_response))
    return session


def refresh_auth(
    server: SandboxServer, clock: FakeClock, store: Path, **kwargs: Any
) -> OAuth2RefreshTokenAuth:
    """A fresh auth object built from configuration only, as each nightly run builds one."""
    return OAuth2RefreshTokenAuth(
        token_url=server.url_for(TOKEN_PATH),
        client_id=server.secrets.client_id,
        client_secret=server.secrets.client_secret,
        refresh_token=server.secrets.refresh_token,
        token_store_path=str(store),
        clock=clock,
        **kwargs,
    )


def tickets_source(
    server: SandboxServer,
    auth: OAuth2TokenAuthBase,
    session: Session | None = None,
    tables: tuple[str, ...] = ("tickets",),
    parallelized: bool = False,
) -> Any:
    client: dict[str, Any] = {"base_url": server.url, "auth": auth}
    if session is not None:
        client["session"] = session
    config = cast(
        "RESTAPIConfig",
        {
            "client": client,
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {
                    "params": {"limit": PAGE_SIZE},
                    "data_selector": "data",
                    "paginator": dict(CURSOR_PAGINATOR),
                },
            },
            "resources": [{"name": name, "endpoint": {"path": f"/v1/{name}"}} for name in tables],
        },
    )
    return rest_api_source(config, parallelized=parallelized)


def make_pipeline(tmp_path: Path, name: str = "auth_sandbox") -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(tmp_path / f"pipelines_{name}"),
        destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
        dataset_name="support_desk",
    )


def assert_no_leaks(text: str) -> None:
    found = [marker for marker in LEAK_MARKERS if marker in text]
    assert not found, f"credentials with prefixes {found} leaked"


def scan_pipeline(pipeline: dlt.Pipeline) -> None:
    trace = pipeline.last_trace
    assert trace is not None
    assert_no_leaks(str(trace))
    assert_no_leaks(json.dumps(trace.asdict(), default=str))
    assert_no_leaks(json.dumps(pipeline.state, default=str))
    if not pipeline.schema_names:  # a first run that failed before extracting
        return
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return
        for table in [*schema.data_table_names(seen_data_only=True), *schema.dlt_table_names()]:
            qualified = client.make_qualified_table_name(table)
            rows = client.execute_sql(f"SELECT * FROM {qualified}")  # noqa: S608 - schema names
            assert_no_leaks(str(rows))


@pytest.mark.parametrize("client_auth", ["body", "basic"])
def test_rotation_is_persisted_across_two_pipeline_runs(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path, client_auth: str
) -> None:
    store = tmp_path / "store" / "tokens.json"
    pipeline = make_pipeline(tmp_path)
    configured = oauth_sandbox.secrets.refresh_token

    auth = refresh_auth(oauth_sandbox, fake_clock, store, client_auth=client_auth)
    pipeline.run(tickets_source(oauth_sandbox, auth))
    assert len(table_ids(pipeline, "tickets")) == SIZE
    assert oauth_sandbox.current_refresh_token != configured, "the configured token is spent"
    assert FileTokenStore(store).load() == oauth_sandbox.current_refresh_token

    fake_clock.advance(24 * 3600)
    auth = refresh_auth(oauth_sandbox, fake_clock, store, client_auth=client_auth)
    pipeline.run(tickets_source(oauth_sandbox, auth))
    assert len(table_ids(pipeline, "tickets")) == SIZE
    assert FileTokenStore(store).load() == oauth_sandbox.current_refresh_token
    assert oauth_sandbox.token_requests == {"refresh_token": 2}
    assert oauth_sandbox.count(TOKEN_PATH, status=400) == 0
    scan_pipeline(pipeline)


@pytest.mark.slow
def test_single_use_refresh_tokens_and_30s_access_tokens_survive_20_nightly_runs(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path
) -> None:
    pipeline = make_pipeline(tmp_path, "nightly")
    token_url = oauth_sandbox.url_for(TOKEN_PATH)
    store = default_token_store_path(token_url, oauth_sandbox.secrets.client_id)
    for night in range(20):
        # a nightly job: fresh process, fresh auth object from config, default token store
        auth = OAuth2RefreshTokenAuth(
            token_url=token_url,
            client_id=oauth_sandbox.secrets.client_id,
            client_secret=oauth_sandbox.secrets.client_secret,
            refresh_token=oauth_sandbox.secrets.refresh_token,
            clock=fake_clock,
        )
        session = data_session(oauth_sandbox, fake_clock, seconds_per_response=10)
        pipeline.run(tickets_source(oauth_sandbox, auth, session))
        assert len(table_ids(pipeline, "tickets")) == SIZE, f"night {night}"
        assert str(auth.resolved_token_store) == f"the token store file {store}"
        fake_clock.advance(24 * 3600 - 123)

    assert store.is_relative_to(Path.home())
    assert FileTokenStore(store).load() == oauth_sandbox.current_refresh_token
    refreshes = oauth_sandbox.token_requests["refresh_token"]
    assert refreshes > 20, "30 s tokens are refreshed during runs too"
    assert oauth_sandbox.issued_refresh_tokens == refreshes
    assert oauth_sandbox.count(TOKEN_PATH, status=400) == 0, "no invalid_grant, ever"
    assert oauth_sandbox.count(TICKETS, status=401) == 0, "tokens are refreshed before expiry"
    scan_pipeline(pipeline)


def test_api_401_mid_run_refreshes_once_and_the_run_completes(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path
) -> None:
    class ExpiringAdapter(HTTPAdapter):
        """Revokes every access token server side after the first page."""

        pages = 0

        def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
            response = super().send(request, *args, **kwargs)
            ExpiringAdapter.pages += 1
            if ExpiringAdapter.pages == 1:
                oauth_sandbox.expire_access_tokens()
            return response

    session = Client(raise_for_status=False).session
    session.mount(oauth_sandbox.url, ExpiringAdapter())
    pipeline = make_pipeline(tmp_path)
    auth = refresh_auth(oauth_sandbox, fake_clock, tmp_path / "tokens.json")
    pipeline.run(tickets_source(oauth_sandbox, auth, session))

    assert len(table_ids(pipeline, "tickets")) == SIZE
    assert oauth_sandbox.count(TICKETS, status=401) == 1
    assert oauth_sandbox.token_requests == {"refresh_token": 2}
    assert FileTokenStore(tmp_path / "tokens.json").load() == oauth_sandbox.current_refresh_token


def test_parallel_resources_share_one_token_request(
    sandbox_factory: SandboxFactory, fake_clock: FakeClock, tmp_path: Path
) -> None:
    server = sandbox_factory(auth="oauth2", clock=fake_clock, shape="desk", size=SIZE)
    tables = ("tickets", "agents", "groups", "brands", "customers")
    with allow_insecure_loopback_token_url(server.url):
        auth = refresh_auth(server, fake_clock, tmp_path / "tokens.json")
        pipeline = make_pipeline(tmp_path)
        pipeline.run(tickets_source(server, auth, tables=tables, parallelized=True))
    assert server.token_requests == {"refresh_token": 1}
    assert server.count(status=401) == 0
    assert all(table_ids(pipeline, table) for table in tables)


def test_revoked_refresh_token_fails_with_guidance_and_no_retry(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path, retry_sleeps: list[float]
) -> None:
    store = tmp_path / "tokens.json"
    oauth_sandbox.revoke_refresh_token()
    pipeline = make_pipeline(tmp_path)
    auth = refresh_auth(oauth_sandbox, fake_clock, store)

    with pytest.raises(PipelineStepFailed) as raised:
        pipeline.run(tickets_source(oauth_sandbox, auth))

    error = find_cause(raised.value, AuthenticationError)
    assert error is not None
    message = str(error)
    assert "invalid_grant" in message
    assert "sources.support_api.credentials.refresh_token" in message
    assert str(store) in message
    assert oauth_sandbox.token_requests == {"refresh_token": 1}
    assert oauth_sandbox.count(TICKETS) == 0
    assert retry_sleeps == []
    assert_no_leaks(str(raised.value))
    trace = pipeline.last_trace
    assert trace is not None
    assert "invalid_grant" in json.dumps(trace.asdict(), default=str), "the scan sees the error"
    scan_pipeline(pipeline)


@pytest.mark.parametrize(
    ("fault", "dropped"),
    [(Fault(status=500), 0), (Fault(status=503, retry_after=3), 0), (Fault(kind="drop"), 1)],
)
def test_token_endpoint_faults_are_retried(
    oauth_sandbox: SandboxServer,
    fake_clock: FakeClock,
    tmp_path: Path,
    retry_sleeps: list[float],
    fault: Fault,
    dropped: int,
) -> None:
    oauth_sandbox.inject(TOKEN_PATH, [fault])
    pipeline = make_pipeline(tmp_path)
    auth = refresh_auth(oauth_sandbox, fake_clock, tmp_path / "tokens.json")
    pipeline.run(tickets_source(oauth_sandbox, auth))

    assert len(table_ids(pipeline, "tickets")) == SIZE
    assert retry_sleeps == [fault.retry_after or 2]
    assert oauth_sandbox.count(TOKEN_PATH, status=200) == 1
    assert oauth_sandbox.count(TOKEN_PATH, status=0) == dropped
    scan_pipeline(pipeline)


def test_token_endpoint_down_fails_after_retries(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path, retry_sleeps: list[float]
) -> None:
    oauth_sandbox.inject(TOKEN_PATH, [Fault(status=502)] * 4)
    pipeline = make_pipeline(tmp_path)
    auth = refresh_auth(oauth_sandbox, fake_clock, tmp_path / "tokens.json")
    with pytest.raises(PipelineStepFailed) as raised:
        pipeline.run(tickets_source(oauth_sandbox, auth))
    error = find_cause(raised.value, AuthenticationError)
    assert error is not None
    assert "HTTP 502 to 4 attempts" in str(error)
    assert retry_sleeps == [2, 4, 8]
    assert oauth_sandbox.current_refresh_token == oauth_sandbox.secrets.refresh_token
    scan_pipeline(pipeline)


def test_a_response_lost_after_rotation_is_reported_as_invalid_grant(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path, retry_sleeps: list[float]
) -> None:
    """The server rotated, then the answer was lost: the new token is gone (documented)."""
    oauth_sandbox.inject(TOKEN_PATH, [Fault(kind="drop_after_processing")])
    auth = refresh_auth(oauth_sandbox, fake_clock, tmp_path / "tokens.json")
    with pytest.raises(AuthenticationError, match="lost in transit") as raised:
        auth.current_access_token()
    assert "invalid_grant" in str(raised.value)
    assert retry_sleeps == [2]
    assert oauth_sandbox.token_requests == {"refresh_token": 2}


def test_client_credentials_grant_against_the_sandbox(
    oauth_sandbox: SandboxServer, fake_clock: FakeClock, tmp_path: Path
) -> None:
    auth = OAuth2ClientCredentialsAuth(
        token_url=oauth_sandbox.url_for("/oauth/v1/token"),
        client_id=oauth_sandbox.secrets.client_id,
        client_secret=oauth_sandbox.secrets.client_secret,
        client_auth="basic",
        clock=fake_clock,
    )
    pipeline = make_pipeline(tmp_path)
    session = data_session(oauth_sandbox, fake_clock, seconds_per_response=10)
    pipeline.run(tickets_source(oauth_sandbox, auth, session))
    assert len(table_ids(pipeline, "tickets")) == SIZE
    assert oauth_sandbox.token_requests["client_credentials"] >= 2, "30 s tokens were renewed"
    assert oauth_sandbox.count(TICKETS, status=401) == 0
    scan_pipeline(pipeline)
