"""Runs support_api pipelines in child processes that SIGKILL themselves at chosen points.

`python -m tests.crash_child` is a small job server (a "zygote"): it imports dlt and the source
once, then reads one JSON job per line on stdin. For each job it forks a child that sets the
job's environment, arms the job's kill point, and runs the pipeline into the job's
`pipelines_dir` and DuckDB file; the server answers with one JSON line on stdout:
`{"returncode": 0}` when the run completed, `{"returncode": -9}` when the child killed itself.
Forking a process that already imported dlt costs milliseconds where a fresh interpreter costs
over a second, which keeps a test of a dozen and more kill points short.

A kill point names a function of dlt (or of the source) and whether the child dies right
before it runs or right after it returns, on its n-th call (see `KILL_POINTS`). The child dies
with `os.kill(os.getpid(), signal.SIGKILL)`: no `finally`, no `atexit`, no flushing.

The child's stdout and stderr go to `<pipelines_dir>/child-<n>.log`, and it is killed by
SIGALRM after `timeout` seconds (a hung run cannot hang the test).

Job keys: `pipelines_dir`, `database`, `resources`, `page_size`, `env` (variables to set:
base URL and credentials), `kill_at` (a `KILL_POINTS` name or null), `kill_after` (n, 1-based),
`timeout`.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import dlt.destinations.impl.duckdb.duck
import dlt.destinations.impl.duckdb.sql_client
import dlt.destinations.insert_job_client
import dlt.destinations.job_client_impl
import dlt.extract.extract
import dlt.extract.extractors
import dlt.load.load
import dlt.normalize.items_normalizers.arrow
import dlt.normalize.items_normalizers.jsonl
import dlt.normalize.normalize
from dlt.common.storages import load_package, load_storage

from sources.support_api import http_policy, support_api

PIPELINE_NAME = "crash_resume"

KILL_POINTS: dict[str, tuple[str, str, str, Callable[..., bool] | None]] = {
    # extract: a page was received (not yet written anywhere)
    "extract.response": ("sources.support_api.http_policy", "PacedSession.send", "after", None),
    # extract: pages were written to the extract buffers (flushed to files when they fill up)
    "extract.items": ("dlt.extract.extractors", "Extractor.write_items", "after", None),
    # extract: everything extracted and the state written, the package not yet committed
    "extract.commit": ("dlt.extract.extract", "Extract.commit_packages", "before", None),
    # extract: package committed for normalize, local pipeline state not yet saved
    "extract.committed": ("dlt.extract.extract", "Extract.commit_packages", "after", None),
    # normalize: about to normalize an extracted package
    "normalize.start": ("dlt.normalize.normalize", "Normalize.spool_schema_files", "before", None),
    # normalize: some of the extracted files normalized and written, others not (the tables
    # arrive as arrow batches, so their files go through dlt's arrow normalizer)
    "normalize.file": (
        "dlt.normalize.items_normalizers.arrow",
        "ArrowItemsNormalizer.__call__",
        "after",
        None,
    ),
    # normalize: all files normalized, the load package not yet committed
    "normalize.commit": (
        "dlt.common.storages.load_storage",
        "LoadStorage.commit_new_load_package",
        "before",
        None,
    ),
    # normalize: load package committed, the extracted package not yet deleted
    "normalize.committed": (
        "dlt.common.storages.load_storage",
        "LoadStorage.commit_new_load_package",
        "after",
        None,
    ),
    # load: before the destination is touched
    "load.start": ("dlt.load.load", "Load.initialize_package", "before", None),
    # load: tables created or migrated, no data job run
    "load.schema": ("dlt.load.load", "Load.initialize_package", "after", None),
    # load: the n-th job of the package completed (staging copies first, merge jobs later)
    "load.job": ("dlt.common.storages.load_package", "PackageStorage.complete_job", "after", None),
    # load: a merge job (SQL follow-up) completed: data is in the final table, package open
    "load.merge": (
        "dlt.common.storages.load_package",
        "PackageStorage.complete_job",
        "after",
        lambda _self, _load_id, file_name, *_a, **_k: str(file_name).endswith(".sql"),
    ),
    # load: every job completed, the load not yet recorded in `_dlt_loads`
    "load.record": (
        "dlt.destinations.job_client_impl",
        "SqlJobClientBase.complete_load",
        "before",
        None,
    ),
    # load: recorded in `_dlt_loads`, the package not yet marked loaded on disk
    "load.recorded": (
        "dlt.destinations.job_client_impl",
        "SqlJobClientBase.complete_load",
        "after",
        None,
    ),
    # load: package archived as loaded, the process dies before the run returns
    "load.archived": (
        "dlt.common.storages.load_storage",
        "LoadStorage.complete_load_package",
        "after",
        None,
    ),
}
"""Kill point name: (module, `Class.function`, `before` or `after` the call, which calls count)."""

# the modules named in KILL_POINTS (and those a DuckDB run needs) are imported before any fork
_IMPORTED = (
    dlt.destinations.impl.duckdb.duck,
    dlt.destinations.impl.duckdb.sql_client,
    dlt.destinations.insert_job_client,
    dlt.destinations.job_client_impl,
    dlt.extract.extract,
    dlt.extract.extractors,
    dlt.load.load,
    dlt.normalize.items_normalizers.arrow,
    dlt.normalize.items_normalizers.jsonl,
    dlt.normalize.normalize,
    http_policy,
    load_package,
    load_storage,
)


def die() -> None:
    """Ends this process at once, as `kill -9` from outside would."""
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, after: int) -> None:
    """Wraps the function of `point` so that its `after`-th counted call kills the process."""
    module_name, qualified, when, counts = KILL_POINTS[point]
    owner_name, function_name = qualified.split(".")
    owner = getattr(importlib.import_module(module_name), owner_name)
    original = getattr(owner, function_name)
    calls = 0
    lock = threading.Lock()

    def reached(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        nonlocal calls
        if counts is not None and not counts(*args, **kwargs):
            return False
        with lock:
            calls += 1
            return calls == after

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = reached(args, kwargs)
        if hit and when == "before":
            die()
        result = original(*args, **kwargs)
        if hit:
            die()
        return result

    setattr(owner, function_name, wrapper)


def run_job(job: dict[str, Any]) -> None:
    """Runs the pipeline as a scheduled job would: finish pending work, then sync."""
    os.environ.update(job.get("env", {}))
    if job.get("kill_at"):
        arm(job["kill_at"], int(job.get("kill_after", 1)))
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=job["pipelines_dir"],
        destination=dlt.destinations.duckdb(job["database"]),
        dataset_name="support_desk",
    )

    def source() -> Any:
        return support_api(resources=job["resources"], page_size=job["page_size"])

    resumed = pipeline.has_pending_data
    pipeline.run(source())
    if resumed:  # dlt loaded the pending packages and returned: run again for new data
        pipeline.run(source())


def child(job: dict[str, Any], log_path: Path) -> None:
    """The forked child: output to a log file, a watchdog, the job, then a plain exit."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.alarm(int(job.get("timeout", 60)))
    try:
        run_job(job)
    except BaseException:  # noqa: BLE001 - reported through the exit code and the log
        import traceback  # noqa: PLC0415 - only on failure

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve() -> None:
    """Reads jobs from stdin, runs each in a forked child, answers with its exit status."""
    dlt.current.run_context()  # loads dlt's plugins once, here
    if threading.active_count() != 1:
        raise RuntimeError("the job server must not fork with threads running")
    for number, line in enumerate(sys.stdin):
        if not line.strip():
            continue
        job = json.loads(line)
        log_path = Path(job["pipelines_dir"]) / f"child-{number}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            child(job, log_path)
        _, status = os.waitpid(pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        sys.stdout.write(json.dumps({"returncode": returncode, "log": str(log_path)}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
