"""Crash and resume: a pipeline process SIGKILLed anywhere loses and duplicates nothing.

Each case runs the pipeline in a child process (`tests/crash_child.py`) that kills itself with
SIGKILL at one point of extract, normalize or load, then reruns it normally in a new process on
the same pipelines folder and DuckDB file. dlt finishes the pending packages and the run syncs
what changed, and then:

- every table holds exactly the sandbox's rows (ids and updated timestamps), no duplicates;
- the incremental state is never ahead of what was loaded: right after the kill, the state
  committed in the destination is not ahead of the rows there, and the local state is ahead
  only while a pending package holds those rows; after the rerun all three agree with the
  sandbox.

Some cases crash the first run into an empty destination, others an incremental run after the
sandbox changed; some change the sandbox again between the crash and the rerun.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dlt.common.versioned_state import decompress_state

from tests.crash_child import KILL_POINTS, PIPELINE_NAME
from tests.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ["tickets", "ticket_comments", "agents"]
SEED = 23
SIZE = 30
PAGE_SIZE = 10
DATASET = "support_desk"


class JobServer:
    """The `tests.crash_child` process: one JSON job in, one exit status out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def run(self, job: dict[str, Any]) -> tuple[int, str]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        log = Path(answer["log"]).read_text(encoding="utf-8", errors="replace")
        return answer["returncode"], log


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobServer]:
    home = tmp_path_factory.mktemp("crash_home")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "DLT_DATA_DIR": str(home / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__LOG_LEVEL": "WARNING",
        # small extract buffers: files are written while extracting, and normalize and load
        # have several files (jobs) per table to be killed between
        "DATA_WRITER__BUFFER_MAX_ITEMS": "15",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield JobServer(process)
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


class Sync:
    """One pipeline (folder and DuckDB file) synced from one sandbox, run in child processes."""

    def __init__(self, jobs: JobServer, server: Any, folder: Path) -> None:
        self.jobs = jobs
        self.server = server
        self.pipelines_dir = folder / "pipelines"
        self.database = folder / "desk.duckdb"

    def run(self, kill_at: str | None = None, kill_after: int = 1) -> tuple[int, str]:
        env = {
            "SOURCES__SUPPORT_API__BASE_URL": self.server.url,
            "SOURCES__SUPPORT_API__CREDENTIALS__API_KEY": self.server.secrets.api_key,
            "SOURCES__SUPPORT_API__CREDENTIALS__NAME": "api_key",
            "SOURCES__SUPPORT_API__CREDENTIALS__LOCATION": "query",
        }
        job = {
            "pipelines_dir": str(self.pipelines_dir),
            "database": str(self.database),
            "resources": RESOURCES,
            "page_size": PAGE_SIZE,
            "env": env,
            "kill_at": kill_at,
            "kill_after": kill_after,
            "timeout": 60,
        }
        return self.jobs.run(job)

    # -- what is where -----------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.database.exists():
            return []
        with duckdb.connect(str(self.database), read_only=True) as connection:
            try:
                return connection.execute(sql, list(params)).fetchall()
            except duckdb.CatalogException:  # the dataset or table does not exist yet
                return []

    def loaded(self, table: str) -> list[tuple[int, datetime]]:
        sql = f"SELECT id, updated_at FROM {DATASET}.{table} ORDER BY id"  # noqa: S608 - fixed names
        return self.query(sql)

    def committed_state(self) -> dict[str, Any]:
        rows = self.query(
            f"SELECT s.state FROM {DATASET}._dlt_pipeline_state AS s"  # noqa: S608 - fixed names
            f" JOIN {DATASET}._dlt_loads AS l ON l.load_id = s._dlt_load_id"
            " WHERE s.pipeline_name = ? AND l.status = 0 ORDER BY l.load_id DESC LIMIT 1",
            PIPELINE_NAME,
        )
        return decompress_state(rows[0][0]) if rows else {}

    def local_state(self) -> dict[str, Any]:
        path = self.pipelines_dir / PIPELINE_NAME / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def pending_packages(self) -> list[str]:
        """Extracted or normalized packages not yet loaded (folders: a SIGKILL can leave an
        empty temp file of an interrupted atomic write next to them, which dlt ignores)."""
        root = self.pipelines_dir / PIPELINE_NAME
        folders = [root / "normalize" / "extracted", root / "load" / "normalized"]
        return [
            str(path.relative_to(root))
            for folder in folders
            if folder.exists()
            for path in folder.iterdir()
            if path.is_dir()
        ]


def last_value(state: dict[str, Any], resource: str) -> datetime | None:
    resources = state.get("sources", {}).get("support_api", {}).get("resources", {})
    value = resources.get(resource, {}).get("incremental", {}).get("updated_at", {})
    text = value.get("last_value")
    return datetime.fromisoformat(text) if text else None


def max_loaded(sync: Sync, table: str) -> datetime | None:
    stamps = [stamp for _, stamp in sync.loaded(table)]
    return max(stamps) if stamps else None


def assert_state_not_ahead_of_data(sync: Sync) -> None:
    committed = sync.committed_state()
    local = sync.local_state()
    pending = sync.pending_packages()
    for resource in RESOURCES:
        loaded = max_loaded(sync, resource)
        in_destination = last_value(committed, resource)
        if in_destination is not None:
            assert loaded is not None, f"{resource}: state committed without its rows"
            assert in_destination <= loaded, resource
        in_folder = last_value(local, resource)
        if in_folder is not None and (loaded is None or in_folder > loaded):
            assert pending, f"{resource}: local state ahead of the destination, nothing pending"


def assert_exact_sync(sync: Sync) -> None:
    server = sync.server
    for resource in RESOURCES:
        loaded = sync.loaded(resource)
        ids = [row_id for row_id, _ in loaded]
        assert len(ids) == len(set(ids)), f"duplicates in {resource}"
        served = {row["id"]: row["updated_at"] for row in server.dataset.rows(resource)}
        stamps = {row_id: stamp.strftime("%Y-%m-%dT%H:%M:%SZ") for row_id, stamp in loaded}
        assert stamps == served, resource
        newest = datetime.fromisoformat(server.dataset.max_updated_at(resource))
        assert last_value(sync.local_state(), resource) == newest, resource
        assert last_value(sync.committed_state(), resource) == newest, resource
        assert max_loaded(sync, resource) == newest, resource
    assert sync.pending_packages() == []


KILLS = [
    # extract
    pytest.param("extract.response", 6, "first", True, id="extract-after-six-pages"),
    pytest.param("extract.items", 4, "first", False, id="extract-buffers-partly-flushed"),
    pytest.param("extract.commit", 1, "incremental", True, id="extract-before-package-commit"),
    pytest.param("extract.committed", 1, "incremental", False, id="extract-before-state-save"),
    # normalize
    pytest.param("normalize.start", 1, "incremental", False, id="normalize-start"),
    pytest.param("normalize.file", 2, "first", True, id="normalize-some-files-written"),
    pytest.param("normalize.commit", 1, "incremental", True, id="normalize-before-commit"),
    pytest.param("normalize.committed", 1, "first", False, id="normalize-before-cleanup"),
    # load
    pytest.param("load.start", 1, "incremental", True, id="load-start"),
    pytest.param("load.schema", 1, "first", False, id="load-tables-created-no-data"),
    pytest.param("load.job", 2, "first", False, id="load-some-staging-jobs-done"),
    pytest.param("load.merge", 1, "incremental", False, id="load-one-table-merged"),
    pytest.param("load.record", 1, "first", True, id="load-before-loads-record"),
    pytest.param("load.recorded", 1, "incremental", True, id="load-recorded-not-archived"),
    pytest.param("load.archived", 1, "incremental", False, id="load-archived-run-not-done"),
]


def test_every_kill_point_is_covered():
    points = [str(param.values[0]) for param in KILLS]
    assert sorted(points) == sorted(KILL_POINTS)
    assert len(KILLS) >= 10
    for stage in ("extract", "normalize", "load"):
        assert sum(1 for param in KILLS if str(param.values[0]).startswith(stage)) >= 3


@pytest.fixture(scope="module")
def baseline(job_server: JobServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed first sync of the sandbox, copied by the incremental cases.

    The sandbox is deterministic: a fresh one with the same seed serves the same rows, so a
    copy of this pipeline folder and database is what a first run would have left.
    """
    folder = tmp_path_factory.mktemp("baseline")
    with SandboxServer(seed=SEED, size=SIZE, shape="desk", auth="api_key_query") as server:
        returncode, log = Sync(job_server, server, folder).run()
    assert returncode == 0, log
    return folder


@pytest.mark.parametrize(("kill_at", "kill_after", "scenario", "change_before_rerun"), KILLS)
def test_a_killed_run_resumes_to_the_exact_data(
    job_server,
    baseline,
    sandbox_factory,
    tmp_path,
    kill_at,
    kill_after,
    scenario,
    change_before_rerun,
):
    server = sandbox_factory(seed=SEED, size=SIZE, shape="desk", auth="api_key_query")
    sync = Sync(job_server, server, tmp_path)
    if scenario == "incremental":
        shutil.copytree(baseline / "pipelines", sync.pipelines_dir)
        shutil.copyfile(baseline / "desk.duckdb", sync.database)
        assert_exact_sync(sync)
        server.mutate(updates=4, creates=3, tables=RESOURCES)

    returncode, log = sync.run(kill_at=kill_at, kill_after=kill_after)
    assert returncode == -9, f"the child was not killed at {kill_at}:\n{log}"
    assert_state_not_ahead_of_data(sync)

    if change_before_rerun:
        server.mutate(updates=3, creates=2, tables=RESOURCES)
    returncode, log = sync.run()
    assert returncode == 0, log
    assert_exact_sync(sync)
