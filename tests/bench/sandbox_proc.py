"""The sandbox API in its own process, and request counts read from its stats route.

The server is started as `python -m tests.sandbox ... --mutate-endpoint` (which also serves
`GET /_sandbox/stats`), on a free loopback port, and stopped with SIGTERM (then SIGKILL if it
does not stop). Admin routes are neither logged nor rate limited, so reading the stats does
not change them.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

from tests.sandbox import ADMIN_PREFIX, TOKEN_PATHS

ROOT: Final = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
STATS_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class SandboxConfig:
    """How a sandbox process is started.

    Attributes:
        seed: Dataset and credentials seed.
        size: Number of tickets (other tables scale from it).
        shape: Route preset.
        latency_ms: Delay added to each request.
        rate_limit: Requests allowed per 1-second window, None for no limit.
        auth: Auth mode of the data routes.
    """

    seed: int
    size: int
    shape: str
    latency_ms: float = 0.0
    rate_limit: int | None = None
    auth: str = "api_key_query"

    def argv(self) -> list[str]:
        """Command line of the sandbox process."""
        args = [
            sys.executable,
            "-m",
            "tests.sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            "--size",
            str(self.size),
            "--shape",
            self.shape,
            "--auth",
            self.auth,
            "--latency-ms",
            str(self.latency_ms),
            "--mutate-endpoint",
        ]
        if self.rate_limit is not None:
            args += ["--rate-limit", str(self.rate_limit)]
        return args


@dataclass(frozen=True)
class RequestDelta:
    """Requests the sandbox served between two stats snapshots.

    Attributes:
        by_path: Responses per data path and status (`0` = dropped connection).
    """

    by_path: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All data requests."""
        return sum(sum(statuses.values()) for statuses in self.by_path.values())

    def with_status(self, status: int) -> int:
        """Data requests answered with `status`."""
        return sum(statuses.get(status, 0) for statuses in self.by_path.values())

    @property
    def ok(self) -> int:
        """Data requests answered 200."""
        return self.with_status(200)

    def per_path(self) -> dict[str, int]:
        """Data requests per path, every status."""
        return {path: sum(statuses.values()) for path, statuses in sorted(self.by_path.items())}

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "total": self.total,
            "ok": self.ok,
            "status_429": self.with_status(429),
            "by_path": {
                path: {str(status): n for status, n in sorted(statuses.items())}
                for path, statuses in sorted(self.by_path.items())
            },
        }


def _counts(stats: Mapping[str, Any]) -> dict[str, dict[int, int]]:
    counts: dict[str, dict[int, int]] = {}
    for path, statuses in stats.get("requests", {}).items():
        if path in TOKEN_PATHS or path.startswith(ADMIN_PREFIX):
            continue
        counts[path] = {int(status): int(n) for status, n in statuses.items()}
    return counts


def request_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> RequestDelta:
    """Data requests served between two `GET /_sandbox/stats` answers.

    Args:
        before: Stats read before the run.
        after: Stats read after the run.

    Returns:
        The difference, without token and admin requests.
    """
    first, last = _counts(before), _counts(after)
    delta: dict[str, dict[int, int]] = {}
    for path, statuses in last.items():
        for status, n in statuses.items():
            diff = n - first.get(path, {}).get(status, 0)
            if diff:
                delta.setdefault(path, {})[status] = diff
    return RequestDelta(delta)


class SandboxProcess:
    """A running sandbox process; use as a context manager."""

    def __init__(self, config: SandboxConfig, log_path: Path) -> None:
        """Prepares the process; `start` (or `with`) launches it.

        Args:
            config: How to start it.
            log_path: File receiving the server's stderr.
        """
        self.config = config
        self.log_path = log_path
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        """Launches the server and waits for its ready line.

        Returns:
            The process wrapper, with `url` set.

        Raises:
            RuntimeError: If the server exits or stays silent for `READY_TIMEOUT_S`.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                self.config.argv(), cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True
            )
        stdout = self._proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not selector.select(timeout=0.2):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"sandbox did not start: {self.log_path.read_text()[-2000:]}"
                    )
        line = stdout.readline()
        try:
            self.url = str(json.loads(line)["url"])
        except (ValueError, KeyError) as exc:
            self.stop()
            raise RuntimeError(f"unexpected sandbox ready line: {line!r}") from exc
        return self

    def cpu_s(self) -> float | None:
        """CPU seconds the server has used so far (user + system), from `/proc/<pid>/stat`.

        The server shares the machine's cores with the run it serves: its CPU between two
        reads is what the run cost the sandbox. None when the process or `/proc` is missing.
        """
        if self._proc is None:
            return None
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        # fields after the command name (which may hold spaces): state is field 3, utime 14
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self, *, reset_peak: bool = False) -> dict[str, Any]:
        """Reads `GET /_sandbox/stats`.

        Args:
            reset_peak: Start a new `peak_in_flight` once read (before a run).

        Returns:
            The stats document.

        Raises:
            RuntimeError: If the route does not answer 200.
        """
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=STATS_TIMEOUT_S
        )
        try:
            query = "?reset_peak=1" if reset_peak else ""
            connection.request("GET", f"{ADMIN_PREFIX}stats{query}")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != http.HTTPStatus.OK:
            raise RuntimeError(f"sandbox stats answered {response.status}")
        document: dict[str, Any] = json.loads(body)
        return document

    def stop(self) -> None:
        """Stops the server: SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        """Starts the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the server."""
        self.stop()
