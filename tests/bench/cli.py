"""Command line of the benchmarks: `python -m tests.bench [--workdir DIR] [--cases ...]`.

Exit status 0 when every run loaded exactly the expected rows (targets missed or not), 1 when
any run failed or loaded wrong rows, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from tests.bench.cases import CASE_NAMES, Case, build_cases
from tests.bench.report import (
    evaluate_targets,
    render_failures,
    render_table,
    render_targets,
    summarize,
)
from tests.bench.runner import Runner

RESULTS_FILE: Final = "bench-results.json"
BUSY_LOAD_PER_CPU: Final = 0.5
"""A 1-minute load average above this per CPU (besides the bench) makes timings unreliable."""
DEFAULT_WORKDIR: Final = Path(tempfile.gettempdir()) / "support_api_bench"


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=(
            "Benchmark support_api against plain dlt rest_api_source on the loopback sandbox."
        ),
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"run dirs and {RESULTS_FILE} (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASE_NAMES),
        help=f"comma-separated cases (default all): {', '.join(CASE_NAMES)}",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measured support_api runs (default 3; 1 for rows_1m_memory and with --quick)",
    )
    parser.add_argument(
        "--plain-repeat",
        type=int,
        default=1,
        help=(
            "measured runs of plain dlt baselines (default 1, at most --repeat); plain jsonl in"
            " tickets_50k and every variant of children_latency20 run --repeat times since"
            " targets are ratios to them"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (5k tickets, 50k for the memory case) for a smoke run",
    )
    parser.add_argument(
        "--tickets",
        type=int,
        default=None,
        help="tickets of every case, in place of its size (a smoke test of the bench itself)",
    )
    parser.add_argument("--seed", type=int, default=1, help="sandbox seed (default 1)")
    parser.add_argument(
        "--keep-runs",
        action="store_true",
        help="keep every run dir (DuckDB files, pipeline state, logs) under WORKDIR/runs",
    )
    return parser


def select_cases(names: str, quick: bool, tickets: int | None = None) -> list[Case]:
    """The cases named in `--cases`, in the default order.

    Args:
        names: Comma-separated names.
        quick: Small sizes.
        tickets: Tickets of every case, in place of its size.

    Returns:
        The cases.

    Raises:
        ValueError: If a name is unknown or none is given.
    """
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = wanted - set(CASE_NAMES)
    if unknown or not wanted:
        raise ValueError(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASE_NAMES)}")
    return [case for case in build_cases(quick, tickets) if case.name in wanted]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _meta(args: argparse.Namespace, cases: Sequence[Case], runner: Runner) -> dict[str, Any]:
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "dlt": _version("dlt"),
        "duckdb": _version("duckdb"),
        "quick": args.quick,
        "tickets": args.tickets,
        "seed": args.seed,
        "repeats": {
            case.name: {v: runner.repeats(case, v) for g in case.groups for v in g.variants}
            for case in cases
        },
        "cases": {case.name: case.title for case in cases},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the selected cases, prints the report and writes the JSON results.

    Args:
        argv: Arguments without the program name; None reads `sys.argv`.

    Returns:
        The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cases = select_cases(args.cases, args.quick, args.tickets)
    except ValueError as exc:
        parser.error(str(exc))
    if (args.repeat is not None and args.repeat < 1) or args.plain_repeat < 1:
        parser.error("repeats must be >= 1")
    if args.tickets is not None and args.tickets < 1:
        parser.error("--tickets must be >= 1")
    repeat = 1 if args.quick and args.repeat is None else args.repeat
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    runner = Runner(
        workdir,
        seed=args.seed,
        repeat=repeat,
        plain_repeat=args.plain_repeat,
        keep_runs=args.keep_runs,
        log=log,
    )
    meta = _meta(args, cases, runner)
    started = time.perf_counter()
    results = runner.run_cases(cases)
    meta["total_s"] = round(time.perf_counter() - started, 1)
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = summarize(results)
    targets = evaluate_targets(rows)
    failures = render_failures(results)
    correct = not failures and all(row["ok"] for row in rows)

    log("")
    log(
        f"Results (medians; {meta['dlt'] and 'dlt ' + meta['dlt']}, {meta['cpus']} CPUs,"
        f" {meta['total_s']} s in all). Peak MB = peak RSS of the run's own process."
    )
    log(
        f"n = measured runs (figures are medians over them). Plain baselines run"
        f" {args.plain_repeat}x (--plain-repeat), except plain jsonl in tickets_50k and every"
        " variant of children_latency20, which run as often as support_api because targets"
        " are ratios to them."
    )
    log("x dflt / x jsonl = median wall of plain default / plain jsonl over this row's.")
    busy = meta["load_average_at_start"][0]
    if busy > BUSY_LOAD_PER_CPU * (os.cpu_count() or 1):
        log(
            f"WARNING: load average {busy:.1f} on {os.cpu_count()} CPUs before the bench"
            " started: other work was running, timings are likely inflated."
        )
    log(render_table(rows))
    log("")
    log("Targets (support_api, medians):")
    if args.quick or args.tickets is not None:
        log("  (--quick/--tickets: sizes differ from what the targets assume; indicative only)")
    log(render_targets(targets))
    if failures:
        log("")
        log("!" * 72)
        log("CORRECTNESS FAILURES: wrong rows, wrong ids or failed runs")
        log(failures)
        log("!" * 72)
    document = {"meta": meta, "correct": correct, "rows": rows, "targets": targets}
    out = workdir / RESULTS_FILE
    out.write_text(json.dumps(document, indent=2) + "\n")
    log("")
    log(f"JSON: {out}")
    log("ALL ROWS CORRECT" if correct else "FAIL: some runs loaded wrong rows (see above)")
    return 0 if correct else 1
