"""Shared fixtures: isolated dlt storage per test, the sandbox, and pipeline helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import PostgresNotAvailableError, PostgresServer

pytest_plugins = ["tests.sandbox.fixtures"]


@pytest.fixture(autouse=True)
def isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs every test in its own folder: dlt data dir, home (token stores), cwd."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def insecure_loopback_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets requests-oauthlib talk to the plain-http sandbox token endpoint (tests only)."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


class RecordedSleeps(list[float]):
    """The waits dlt's retry machinery asked for, in order, instead of sleeping.

    A recorded wait still counts as time gone by for the rate-limit pacer (`clock`): a retry
    that dlt held for a 429's `Retry-After` is not held that long again, for real, by the pacer.
    """

    def sleep(self, seconds: float) -> None:
        self.append(seconds)

    def clock(self) -> float:
        """Monotonic seconds plus every wait recorded so far."""
        return time.monotonic() + sum(self)


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> RecordedSleeps:
    """Patches tenacity's sleep (used by dlt's retrying sessions) and records the waits.

    The source's rate-limit pacers read `RecordedSleeps.clock`, so that the waits recorded
    instead of slept have passed for them too.
    """
    import tenacity.nap  # noqa: PLC0415 - imported where patched

    from sources.support_api import http_policy  # noqa: PLC0415 - patched for this test only

    sleeps = RecordedSleeps()

    class _Time:
        sleep = staticmethod(sleeps.sleep)

    class _Pacer(http_policy.RateLimitPacer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("clock", sleeps.clock)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tenacity.nap, "time", _Time)
    monkeypatch.setattr(http_policy, "RateLimitPacer", _Pacer)
    return sleeps


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on 127.0.0.1, one per test session.

    Skips the test when the server binaries are not installed, except under CI (`CI` set),
    where that fails it: CI installs the Debian package first (`.ci/run`).
    """
    try:
        server = PostgresServer.start()
    except PostgresNotAvailableError as error:
        if os.environ.get("CI"):
            pytest.fail(f"{error}; CI must install it (see .ci/run)")
        pytest.skip(str(error))
    yield server
    server.stop()
