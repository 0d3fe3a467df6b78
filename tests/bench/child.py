"""Starts `tests.bench.run_one` in a fresh process and measures its peak RSS with `os.wait4`.

The child runs in its run dir (so no project `.dlt/` config is read), with its own dlt data
dir, WARNING logs, telemetry off, and no inherited dlt config env vars: what it measures is
the code's defaults. Its peak RSS is the `ru_maxrss` that `wait4` reports for it alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tests.bench.sandbox_proc import ROOT
from tests.bench.spec import RunSpec

POLL_S: Final = 0.02
STDERR_TAIL_CHARS: Final = 3000
DROPPED_ENV_PREFIXES: Final = (
    "SOURCES__",
    "DESTINATION__",
    "NORMALIZE__",
    "EXTRACT__",
    "LOAD__",
    "DATA_WRITER__",
    "RUNTIME__",
    "PIPELINES__",
    "DLT_",
)
"""Inherited settings that would change what dlt does; the child gets none of them."""


@dataclass(frozen=True)
class ChildOutcome:
    """What a child run reported, and what the parent saw of it.

    Attributes:
        result: The child's JSON result (empty when it wrote none).
        peak_rss_mb: The child's `ru_maxrss` from `wait4`, in MiB.
        exit_code: Exit status (negative: killed by that signal).
        timed_out: Whether the parent killed it at the time limit.
        process_s: Wall time of the whole process, start to reap.
        stderr_tail: End of its stderr, for failures.
    """

    result: dict[str, Any]
    peak_rss_mb: float
    exit_code: int
    timed_out: bool
    process_s: float
    stderr_tail: str

    @property
    def error(self) -> str | None:
        """Why the run failed, None when it succeeded."""
        if self.timed_out:
            return "timed out"
        if self.result.get("error"):
            return str(self.result["error"])
        if self.exit_code != 0 or not self.result:
            return f"child exited with {self.exit_code}: {self.stderr_tail}"
        return None


def child_env(spec: RunSpec) -> dict[str, str]:
    """Environment of a child run.

    Args:
        spec: The run.

    Returns:
        The variables.
    """
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(DROPPED_ENV_PREFIXES)
    }
    env |= {
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DLT_DATA_DIR": str(Path(spec.run_dir) / "dlt_data"),
        "RUNTIME__LOG_LEVEL": "WARNING",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    return env


def _kill_group(pid: int) -> None:
    """Kills the process group of a child we started (the child and any workers of it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _wait(pid: int, deadline: float) -> tuple[int, resource.struct_rusage, bool]:
    """Reaps a child, killing its process group at `deadline`.

    Returns:
        Wait status, the child's resource usage, and whether it was killed at the deadline.
    """
    while True:
        reaped, status, usage = os.wait4(pid, os.WNOHANG)
        if reaped == pid:
            return status, usage, False
        if time.monotonic() > deadline:
            _kill_group(pid)
            _, status, usage = os.wait4(pid, 0)
            return status, usage, True
        time.sleep(POLL_S)


def run_child(spec: RunSpec, timeout_s: float) -> ChildOutcome:
    """Runs one spec in a fresh process and waits for it, at most `timeout_s`.

    Args:
        spec: The run; its run dir must exist.
        timeout_s: Time limit; the child is killed after it.

    Returns:
        The outcome.
    """
    spec_path = spec.dump()
    run_dir = Path(spec.run_dir)
    stdout_path, stderr_path = run_dir / "stdout.txt", run_dir / "stderr.txt"
    started = time.perf_counter()
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "tests.bench.run_one", str(spec_path)],
            cwd=run_dir,
            env=child_env(spec),
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: a kill reaches its workers too
        )
    try:
        status, usage, timed_out = _wait(proc.pid, time.monotonic() + timeout_s)
    except BaseException:
        _kill_group(proc.pid)
        with contextlib.suppress(ChildProcessError):
            os.wait4(proc.pid, 0)
        proc.returncode = -signal.SIGKILL
        raise
    process_s = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    proc.returncode = exit_code  # reaped here: Popen must not wait for it again
    result: dict[str, Any] = {}
    if spec.result_path.exists():
        text = spec.result_path.read_text().strip()
        if text:
            result = json.loads(text)
    return ChildOutcome(
        result=result,
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
        exit_code=exit_code,
        timed_out=timed_out,
        process_s=round(process_s, 3),
        stderr_tail=stderr_path.read_text(errors="replace")[-STDERR_TAIL_CHARS:],
    )
