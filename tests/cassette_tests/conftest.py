"""Fixtures of the cassette tests (pytest-recording, vcrpy).

Each test marked `vcr` replays `cassettes/<module>/<test>.yaml`, pytest-recording's default
layout next to the module.

Replay is the default: without `--record-mode` pytest-recording uses record mode `none`, so a
request the cassette lacks raises `CannotOverwriteExistingCassetteException`, and the
project's `--block-network --allowed-hosts=...` addopts keep everything but loopback closed.
`vcr_config` never sets `record_mode`: that would override `--record-mode` on the command line.
No sandbox runs on replay; `sandbox_api` hands out a stand-in with the fixed replay URL.

Recording is `nox -s record` (`pytest -m vcr --record-mode=rewrite tests/cassette_tests`):
pytest-recording deletes each cassette and records it again against a sandbox that
`sandbox_api` starts on an ephemeral loopback port.

Matching ignores the port: `before_record_request` rewrites every loopback URI to port 8765
(`REPLAY_URL`), both when recording and, because vcrpy runs the hook before matching, for
every replayed request; response bodies and `Link` headers get the same rewrite, so replayed
walks follow links to 8765. Requests match on method, scheme, host, path and query, never on
headers or bodies, so the credentials replay needs are arbitrary (they are redacted from the
cassettes anyway). `cassette_support` has the details.

The settle margin's clock (`settle.utc_now`) is fixed at `SETTLE_NOW` (after every sandbox
stamp), so the `updated_before` bound catalogue requests carry is the same when recording
and on replay.

After every replayed test, `_cassette_fully_played` fails the test if the code asked for a
request the cassette lacks (even if something swallowed vcrpy's error) or left a recorded
interaction unplayed (`all_played`, with `allow_playback_repeats=False`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import pytest

from sources.support_api import settle
from tests.cassette_tests.cassette_support import (
    CassetteRedactor,
    PlaybackGuard,
    SandboxAPI,
    cassette_options,
    is_recording,
    start_sandbox_api,
)
from tests.sandbox.fixtures import SandboxFactory

SETTLE_NOW: Final = datetime(2026, 1, 1, tzinfo=UTC)
"""The settle margin's `now` in every cassette test: its bound is `2025-12-31T23:59:00Z`."""


@pytest.fixture(autouse=True)
def _fixed_settle_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixes the settle bound sent as `updated_before`, so the cassettes match on replay."""
    monkeypatch.setattr(settle, "utc_now", lambda: SETTLE_NOW)


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    """Matching and redaction of every cassette; a fresh redactor (numbering) per test."""
    return cassette_options(CassetteRedactor())


@pytest.fixture
def recording(vcr: Any) -> bool:
    """Whether this test's cassette is being recorded (a real sandbox must answer)."""
    return vcr is not None and is_recording(vcr)


@pytest.fixture
def sandbox_api(recording: bool, sandbox_factory: SandboxFactory) -> Callable[..., SandboxAPI]:
    """Starts the sandbox while recording, or returns its stand-in on replay.

    Returns:
        A factory taking `seed`, `size`, `table_sizes` and other `SandboxServer` arguments.
    """

    def make(**options: Any) -> SandboxAPI:
        return start_sandbox_api(recording, sandbox_factory, **options)

    return make


@pytest.fixture(autouse=True)
def _cassette_fully_played(vcr: Any) -> Iterator[None]:
    """After a replayed `vcr` test: no request was missing, every interaction was played."""
    if vcr is None or is_recording(vcr):
        yield
        return
    guard = PlaybackGuard(vcr)
    yield
    guard.assert_fully_played()
