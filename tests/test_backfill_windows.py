"""Backfill windows: parallel window loads into parquet files equal one full load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import support_api
from tests.helpers import make_pipeline, table_ids
from tests.sandbox import TABLES, SandboxServer

ROOT = Path(__file__).resolve().parents[1]
BACKFILL_SCRIPT = ROOT / "sources" / "support_api_backfill.py"
START, END = "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z"
WINDOW_OPTIONS = ("--windows", "4", "--workers", "2", "--bucket-url")
WINDOWS = [
    ("2024-01-01T00:00:00Z", "2024-01-01T00:30:00Z"),
    ("2024-01-01T00:30:00Z", "2024-01-01T01:00:00Z"),
    ("2024-01-01T01:00:00Z", "2024-01-01T01:30:00Z"),
    ("2024-01-01T01:30:00Z", "2024-01-01T02:00:00Z"),
]


def parquet_rows(bucket: Path, table: str) -> list[tuple[tuple[str, str], ...]]:
    """Every row of `table` in the bucket's parquet files, without dlt's own columns, sorted.

    A column that is null in every row of one load is absent from its files: rows are compared
    as (column, value) pairs of their non-null values.
    """
    files = bucket / "support_desk" / table / "*.parquet"
    relation = duckdb.read_parquet(str(files), union_by_name=True)
    columns = [name for name in relation.columns if not name.startswith("_dlt")]
    rows = (dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall())
    return sorted(
        tuple((c, str(row[c])) for c in sorted(columns) if row[c] is not None) for row in rows
    )


def run_backfill(env: dict[str, str], folder: Path, options: list[str]) -> None:
    """Runs the backfill script over [START, END) and checks that every window loaded."""
    result = subprocess.run(  # noqa: S603 - our own interpreter running our own script
        [sys.executable, str(BACKFILL_SCRIPT), START, END, *options],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for lo, hi in WINDOWS:
        assert f"[{lo}, {hi}) loaded" in result.stdout


@pytest.mark.slow
def test_parallel_windows_together_equal_one_full_load(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=21, size=120, shape="desk", auth="api_key_query")
    assert all(START <= row["updated_at"] < END for t in TABLES for row in server.dataset.rows(t))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")},
        "PYTHONPATH": str(ROOT / "sources"),
        "SOURCES__SUPPORT_API__BASE_URL": server.url,
        "SOURCES__SUPPORT_API__CREDENTIALS__API_KEY": server.secrets.api_key,
        "SOURCES__SUPPORT_API__CREDENTIALS__NAME": "api_key",
        "SOURCES__SUPPORT_API__CREDENTIALS__LOCATION": "query",
    }
    windows_bucket = tmp_path / "windows"
    run_backfill(env, tmp_path, [*WINDOW_OPTIONS, str(windows_bucket)])

    # each window asked the API for its own range only, once per resource
    sent = sorted(
        (r.query["updated_since"], r.query["updated_before"])
        for r in server.requests(path="/v1/groups")
    )
    assert sent == WINDOWS

    full_bucket = tmp_path / "full"
    pipeline = dlt.pipeline(
        pipeline_name="support_api_full_load",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.filesystem(str(full_bucket)),
        dataset_name="support_desk",
    )
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    source = support_api(base_url=server.url, credentials=credentials)
    pipeline.run(source, write_disposition="append", loader_file_format="parquet")

    for table in TABLES:
        full = parquet_rows(full_bucket, table)
        assert len(full) == server.dataset.count(table), table
        assert parquet_rows(windows_bucket, table) == full, table


PARALLEL = ("--windows", "4", "--workers", "4", "--bucket-url")


@pytest.mark.slow
def test_parallel_windows_share_rotating_refresh_tokens(sandbox_factory, tmp_path):
    # every window process refreshes with the single-use refresh token of the shared store:
    # each must exchange the one the window before it saved, not the one it read at start
    server = sandbox_factory(
        seed=21, size=120, shape="desk", auth="oauth2", rotate_refresh_tokens=True
    )
    credentials = "SOURCES__SUPPORT_API__CREDENTIALS__"
    store = tmp_path / "tokens" / "support_api.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")},
        "PYTHONPATH": str(ROOT / "sources"),
        # tests only: requests-oauthlib refuses the sandbox's plain-http loopback token URL
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
        "SOURCES__SUPPORT_API__BASE_URL": server.url,
        f"{credentials}CLIENT_ID": server.secrets.client_id,
        f"{credentials}CLIENT_SECRET": server.secrets.client_secret,
        f"{credentials}REFRESH_TOKEN": server.secrets.refresh_token,
        f"{credentials}TOKEN_URL": server.url_for("/oauth/token"),
        f"{credentials}TOKEN_STORE_PATH": str(store),
    }
    run_backfill(env, tmp_path, [*PARALLEL, str(tmp_path / "windows")])
    assert server.issued_refresh_tokens == len(WINDOWS)
    assert server.current_refresh_token in store.read_text()
    for table in TABLES:
        assert len(parquet_rows(tmp_path / "windows", table)) == server.dataset.count(table)


def scheduled_source(server: SandboxServer, resource: str) -> Any:
    """One resource whose window comes from the external scheduler, not from state."""
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(
        base_url=server.url,
        credentials=credentials,
        resources=[resource],
        allow_external_schedulers=True,
    )


def test_an_external_scheduler_interval_sets_the_window(sandbox_factory, tmp_path, monkeypatch):
    server = sandbox_factory(seed=21, size=120, shape="desk", auth="api_key_query")
    start, end = "2024-01-01T00:10:00Z", "2024-01-01T00:20:00Z"
    monkeypatch.setenv("DLT_INTERVAL_START", start)
    monkeypatch.setenv("DLT_INTERVAL_END", end)
    source = scheduled_source(server, "tickets")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)

    (request, *_) = server.requests(path="/v1/tickets")
    assert (request.query["updated_since"], request.query["updated_before"]) == (start, end)
    expected = [r["id"] for r in server.dataset.rows("tickets") if start <= r["updated_at"] < end]
    assert table_ids(pipeline, "tickets") == sorted(expected)
    assert "tickets" not in str(pipeline.state.get("sources", {}))  # a window keeps no state


def test_scheduler_mode_without_an_interval_fails_and_commits_nothing(
    sandbox_factory, tmp_path, monkeypatch
):
    server = sandbox_factory(seed=21, size=40, shape="desk", auth="api_key_query")
    monkeypatch.delenv("DLT_INTERVAL_START", raising=False)
    monkeypatch.delenv("DLT_INTERVAL_END", raising=False)
    source = scheduled_source(server, "agents")
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed, match="External scheduler"):
        pipeline.run(source)
    assert server.requests(path="/v1/agents") == []
    assert "agents" not in str(pipeline.state.get("sources", {}))
