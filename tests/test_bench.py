"""The benchmark runs end to end and its row checks catch wrong loads (it times nothing here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.bench.run_one import RssSampler
from tests.bench.verify import check_table

REPO = Path(__file__).resolve().parents[1]


def test_a_quick_bench_case_runs_every_variant_and_checks_its_rows(tmp_path):
    workdir = tmp_path / "bench"
    # 500 tickets: what is checked here is that every variant runs and is checked, not speed
    command = [sys.executable, "-m", "tests.bench", "--quick", "--repeat", "1", "--tickets", "500"]
    command += ["--cases", "incremental_nochange", "--workdir", str(workdir)]
    done = subprocess.run(  # noqa: S603 - our own interpreter running our own bench
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ALL ROWS CORRECT" in done.stdout
    results = json.loads((workdir / "bench-results.json").read_text())
    assert results["correct"] is True
    rows = {row["variant"]: row for row in results["rows"]}
    assert set(rows) == {"plain_default", "plain_jsonl", "support_api"}
    for row in rows.values():
        assert row["ok"], row
        assert row["wall_s"] > 0
        assert row["requests"] == 1  # nothing new: one request for the one resource
        # CPU figures are read for every run: the process's, its extract's and the sandbox's
        assert row["run_cpu_s"] > 0
        assert 0 < row["extract_cpu_s"] <= row["run_cpu_s"]
        assert row["sandbox_cpu_s"] is not None
        assert row["sandbox_cpu_s"] >= 0
    # the case's targets are evaluated from the runs (the wall's status is the machine's)
    evaluated = [t for t in results["targets"] if t["case"] == "incremental_nochange"]
    assert evaluated
    assert all(t["value"] is not None and t["status"] != "NOT RUN" for t in evaluated)
    per_resource = next(t for t in evaluated if t["metric"] != "wall_s")
    assert (per_resource["value"], per_resource["status"]) == (1, "PASS")


def test_the_children_case_checks_every_variant_and_the_bare_client(tmp_path):
    workdir = tmp_path / "bench"
    # 30 tickets at 20 ms: each variant reads every ticket's comments, all their pages
    command = [sys.executable, "-m", "tests.bench", "--repeat", "1", "--tickets", "30"]
    command += ["--cases", "children_latency20", "--workdir", str(workdir)]
    done = subprocess.run(  # noqa: S603 - our own interpreter running our own bench
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((workdir / "bench-results.json").read_text())
    rows = {row["variant"]: row for row in results["rows"]}
    assert set(rows) == {"plain_default", "plain_parallelized", "support_api", "bare_threads"}
    expected = {"tickets": 30, "ticket_comments": 60}
    requests = {row["requests"] for row in rows.values()}
    assert len(requests) == 1  # the same pages, whoever reads them
    assert requests.pop() > 30 + 1  # one page of tickets, a page or more per ticket
    for row in rows.values():
        assert row["ok"], row
        (run,) = row["runs"]
        assert {c["table"]: c["count"] for c in run["checks"]} == expected
        assert row["peak_in_flight"] >= 1
    assert rows["bare_threads"]["peak_in_flight"] > 1  # its threads read comments together
    targets = [t for t in results["targets"] if t["case"] == "children_latency20"]
    assert {t["metric"] for t in targets} == {
        "x_plain_default",
        "x_plain_parallelized",
        "x_of_bare",
    }
    assert all(t["value"] is not None for t in targets)
    assert "x plain par" in done.stdout


def test_the_cpu_of_a_step_is_read_between_the_samples_around_it():
    sampler = RssSampler()
    # (epoch time, RSS KiB, process CPU seconds): 1 CPU second per wall second, then none
    sampler.samples = [(100.0, 1, 5.0), (101.0, 1, 6.0), (102.0, 1, 6.0)]
    assert sampler.cpu_s(100.5, 101.5) == 0.5
    assert sampler.cpu_s(100.0, 102.0) == 1.0
    assert sampler.cpu_s(99.0, 101.0) is None  # before the first sample: unknown


@pytest.fixture
def loaded(tmp_path):
    """Returns a function that loads ids into a DuckDB table and checks them against 1..5."""

    def check(ids: list[int]):
        path = tmp_path / f"run{len(list(tmp_path.iterdir()))}.duckdb"
        with duckdb.connect(str(path)) as connection:
            connection.execute("CREATE SCHEMA d")
            connection.execute("CREATE TABLE d.tickets (id BIGINT)")
            connection.executemany("INSERT INTO d.tickets VALUES (?)", [[i] for i in ids])
            return check_table(connection, "d", "tickets", [1, 2, 3, 4, 5])

    return check


def test_the_row_check_passes_exactly_the_expected_ids(loaded):
    assert loaded([5, 3, 1, 2, 4]).ok


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ([1, 2, 3, 4], "4 rows, 4 distinct ids, expected 5"),
        ([1, 2, 3, 4, 5, 5], "6 rows, 5 distinct ids, expected 5"),
        ([1, 2, 3, 4, 6], "id set differs: id #5 in order is 6, expected 5"),
        ([1, 2, 3, 4, 5, 6], "6 rows, 6 distinct ids, expected 5"),
    ],
    ids=["lost", "duplicated", "replaced", "extra"],
)
def test_the_row_check_names_a_lost_duplicated_or_foreign_row(loaded, ids, problem):
    checked = loaded(ids)
    assert not checked.ok
    assert checked.problem == problem
