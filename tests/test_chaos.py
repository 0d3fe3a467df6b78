"""Chaos: 15% of requests faulted, 30-second access tokens, and nothing is lost or duplicated.

All seven resources of the desk shape load through `support_api(...)` with OAuth2 refresh
tokens that rotate on every refresh. The sandbox faults 15% of the requests, token requests
included, with the default fault kinds: 429 with `Retry-After`, 500, 502, 503, 504 and dropped
connections. Time is a `FakeClock` shared by the sandbox (which judges token expiry) and the
auth object (which refreshes early); every data request the sandbox serves moves it on by
2.5 seconds, so a 30-second token lasts about a dozen pages and is refreshed many times per
run, in the middle of paging, from parallel threads.

Waits are patched: tenacity's sleep (data retries and token retries both go through it, see
the `retry_sleeps` fixture) and the rate-limit pacer's sleep, so the runs do work, not
waiting. The cost of chaos is checked in requests sent, which do not depend on the machine;
wall times belong to the bench (`tests/bench/`, `nox -s bench`), not to tests.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.support_api import (
    AuthenticationError,
    OAuth2RefreshTokenAuth,
    http_policy,
    support_api,
)
from sources.support_api.settings import CATALOGUE
from tests.helpers import find_cause, make_pipeline, table_rows
from tests.sandbox import SECRET_PREFIXES, FakeClock, Fault, SandboxServer

TABLES = [spec.name for spec in CATALOGUE]
TOKEN_PATH = "/oauth/token"
SIZE = 300
PAGE_SIZE = 10
SECONDS_PER_PAGE = 2.5
MAX_RETRIES = 6
"""Retries of data and token requests. With the default 3, the chance that one of the ~80
requests of a run meets four faults in a row at a 15% fault rate is about 4%, a flaky test;
with 6 it is about 1 in 10,000. A job facing an API this unreliable would raise it too."""


class ServerTime:
    """The sandbox's clock: each reading moves the shared fake clock on.

    The sandbox reads its clock once per authenticated data request (to check the access
    token) and once per issued token, so time passes as pages are served.
    """

    def __init__(self, clock: FakeClock, step: float) -> None:
        self.clock = clock
        self.step = step

    def __call__(self) -> float:
        return self.clock.advance(self.step)


@pytest.fixture
def no_pacer_waits(monkeypatch, retry_sleeps):
    """Records the rate-limit pacer's waits (after a 429) instead of sleeping."""
    original = http_policy.RateLimitPacer
    monkeypatch.setattr(http_policy, "RateLimitPacer", lambda: original(sleep=retry_sleeps.sleep))
    return retry_sleeps


def oauth_desk(sandbox_factory, clock: FakeClock, fault_rate: float, fault_seed: int = 0):
    return sandbox_factory(
        seed=17,
        size=SIZE,
        shape="desk",
        auth="oauth2",
        access_token_ttl=30,
        rotate_refresh_tokens=True,
        clock=ServerTime(clock, SECONDS_PER_PAGE),
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        fault_token_endpoint=True,
    )


def refresh_auth(server: SandboxServer, clock: FakeClock, **settings: Any):
    options: dict[str, Any] = {
        "token_url": server.url_for(TOKEN_PATH),
        "client_id": server.secrets.client_id,
        "client_secret": server.secrets.client_secret,
        "refresh_token": server.secrets.refresh_token,
        "clock": clock,
        "token_request_max_retries": MAX_RETRIES,
        **settings,
    }
    return OAuth2RefreshTokenAuth(**options)


def desk_source(server: SandboxServer, auth: OAuth2RefreshTokenAuth):
    # server time moves SECONDS_PER_PAGE per request, so an access token lives for 12
    # requests: with many in flight (7 resources x up to 16 windows), a token fetched for a
    # retry can expire before the retry reaches the server, which no real API does; two
    # windows per resource keep the chaos about faults, not about compressed time
    return support_api(
        base_url=server.url,
        credentials=auth,
        page_size=PAGE_SIZE,
        error_handler={"max_retries": MAX_RETRIES},
        concurrency=2,
    )


def refresh_run(server, clock, tmp_path: Path, name: str):
    pipeline = make_pipeline(tmp_path, name)
    auth = refresh_auth(server, clock, token_store_path=str(tmp_path / f"{name}_tokens.json"))
    pipeline.run(desk_source(server, auth))
    return pipeline


def assert_exact_copy(pipeline, server: SandboxServer) -> None:
    for table in TABLES:
        loaded = table_rows(pipeline, table, "id, updated_at")
        ids = [row[0] for row in loaded]
        assert len(ids) == len(set(ids)), f"duplicates in {table}"
        served = {row["id"]: row["updated_at"] for row in server.dataset.rows(table)}
        assert {row_id: ts.strftime("%Y-%m-%dT%H:%M:%SZ") for row_id, ts in loaded} == served, table


def faults_served(server: SandboxServer, path: str | None = None) -> int:
    return sum(1 for record in server.requests(path) if record.fault is not None)


@pytest.mark.parametrize("fault_seed", [1, 2, 3])
def test_every_table_is_exact_under_15_percent_faults_in_at_most_twice_the_clean_requests(
    sandbox_factory, tmp_path, insecure_loopback_oauth, no_pacer_waits, fault_seed
):
    """Exact data under chaos, and the cost of chaos is bounded.

    The cost is counted in requests sent (retries and token refreshes are what chaos adds),
    which does not depend on how fast or busy the machine is: at most twice the clean run's.
    """
    chaos_clock = FakeClock()
    chaos = oauth_desk(sandbox_factory, chaos_clock, fault_rate=0.15, fault_seed=fault_seed)
    # on top of the random draws, which may spare the token endpoint in a short run
    chaos.inject(TOKEN_PATH, [Fault(status=503, retry_after=1), Fault(kind="drop")])
    chaos_pipeline = refresh_run(chaos, chaos_clock, tmp_path, "chaos")

    clean_clock = FakeClock()
    clean = oauth_desk(sandbox_factory, clean_clock, fault_rate=0.0)
    clean_pipeline = refresh_run(clean, clean_clock, tmp_path, "clean")

    assert_exact_copy(clean_pipeline, clean)
    assert_exact_copy(chaos_pipeline, chaos)
    # the chaos was real: data and token requests failed, tokens expired and were refreshed
    assert faults_served(chaos) >= 10
    assert faults_served(chaos, TOKEN_PATH) >= 2
    assert faults_served(clean) == 0
    assert chaos.token_requests["refresh_token"] >= 10
    assert no_pacer_waits, "retries waited (patched)"
    # bounded cost
    assert chaos.count() <= 2 * clean.count()
    # the refresh token rotated many times and the newest one is in the store
    assert chaos.current_refresh_token != chaos.secrets.refresh_token
    store = json.loads((tmp_path / "chaos_tokens.json").read_text())
    assert store["refresh_token"] == chaos.current_refresh_token


class LosesTheThirdTokenAnswer:
    """A token store that, once the second rotated refresh token is saved, makes the network
    lose the sandbox's answer to the next token request (after the sandbox rotated): the third
    token request of the run, a dozen pages in."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.token: str | None = None
        self.saves = 0

    def load(self) -> str | None:
        return self.token

    def save(self, refresh_token: str) -> None:
        self.token = refresh_token
        self.saves += 1
        if self.saves == 2:
            self.server.inject(TOKEN_PATH, [Fault(kind="drop_after_processing")])


def test_a_token_answer_lost_after_rotation_fails_clearly_and_commits_nothing(
    sandbox_factory, tmp_path, insecure_loopback_oauth, no_pacer_waits, caplog
):
    """No client can recover a rotated refresh token whose answer was lost: the run fails,
    saying to issue a new refresh token, and nothing of what was extracted is committed."""
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    server = oauth_desk(sandbox_factory, clock, fault_rate=0.0)
    store = LosesTheThirdTokenAnswer(server)
    pipeline = make_pipeline(tmp_path)

    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(desk_source(server, refresh_auth(server, clock, token_store=store)))

    error = find_cause(failure.value, AuthenticationError)
    assert isinstance(error, AuthenticationError), failure.value
    message = str(error)
    assert "invalid_grant" in message
    assert "lost in transit" in message
    assert "Issue a new refresh token" in message
    assert "sources.support_api.credentials.refresh_token" in message
    assert server.count(TOKEN_PATH, status=0) == 1, "the rotated answer was lost"
    assert server.count(TOKEN_PATH, status=400) >= 1, "the old refresh token was refused"
    # it failed mid-run: pages were extracted, single-page resources maybe completely
    assert server.count(status=200) - server.count(TOKEN_PATH, status=200) >= 10
    assert any(server.count(f"/v1/{name}", status=200) for name in ("agents", "groups", "brands"))
    for text in (str(failure.value), repr(failure.value), caplog.text):
        assert not [prefix for prefix in SECRET_PREFIXES if prefix in text]
    # nothing committed, nothing left pending for a later run to commit
    assert "sources" not in pipeline.state or not pipeline.state["sources"]
    assert not pipeline.has_pending_data
    with pipeline.sql_client() as client:
        assert not client.has_dataset()

    # the user issues a new refresh token and configures it: the next run loads everything
    server.mutate(updates=5, creates=5)
    reissued = server.current_refresh_token
    assert reissued is not None
    auth = refresh_auth(
        server, clock, refresh_token=reissued, token_store_path=str(tmp_path / "tokens.json")
    )
    pipeline.run(desk_source(server, auth))
    assert_exact_copy(pipeline, server)
