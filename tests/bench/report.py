"""Medians, ratios and targets of the results, as a printed table and as JSON.

Ratios are speedups within a group (same sandbox, same data): median wall of the plain
variant divided by the median wall of the row's variant, so `12.0x` under "x default" means
twelve times faster than plain dlt with default settings.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tests.bench.cases import RATE_LIMIT
from tests.bench.runner import RunRecord, VariantResult

Summary = dict[str, Any]

_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Target:
    """A goal of the issue for one figure of support_api in one case.

    Attributes:
        case: Case name.
        metric: Key of the summary row.
        op: Comparison.
        bound: Threshold.
        unit: Unit shown after the value.
        text: What it means.
    """

    case: str
    metric: str
    op: str
    bound: float
    unit: str
    text: str


TARGETS: Final = (
    Target("tickets_50k", "wall_s", "<=", 2.5, "s", "median wall"),
    Target("tickets_50k", "peak_rss_mb", "<=", 300, "MB", "peak RSS"),
    Target("tickets_50k", "x_plain_default", ">=", 10, "x", "speedup vs plain default"),
    Target("tickets_50k", "x_plain_jsonl", ">=", 3, "x", "speedup vs plain jsonl"),
    Target("tickets_50k_latency20", "wall_s", "<=", 4.0, "s", "median wall, 20 ms latency"),
    Target(
        "incremental_nochange",
        "max_requests_per_resource",
        "==",
        1,
        "",
        "data requests per resource",
    ),
    Target("incremental_nochange", "wall_s", "<=", 1.0, "s", "median wall, no change"),
    Target("rate_limited_20rps", "rate_pct_of_limit", ">=", 90, "%", f"of {RATE_LIMIT} requests/s"),
    Target("rate_limited_20rps", "pct_429", "<", 1, "%", "of responses are 429"),
    Target("rows_1m_memory", "peak_rss_mb", "<=", 300, "MB", "peak RSS"),
    Target("children_latency20", "x_plain_default", ">=", 4, "x", "speedup vs plain default"),
    Target(
        "children_latency20",
        "x_plain_parallelized",
        ">=",
        2,
        "x",
        "speedup vs plain parallelized",
    ),
    Target(
        "children_latency20",
        "x_of_bare",
        "<=",
        1.5,
        "x",
        "wall / bare threaded client's wall",
    ),
)
"""The issue's targets, checked on medians of the support_api rows."""


def _step(name: str) -> Callable[[RunRecord], float | None]:
    return lambda record: record.steps.get(name)


def _rate_pct(limit: int | None) -> Callable[[RunRecord], float | None]:
    def percent(record: RunRecord) -> float | None:
        extract = record.steps.get("extract")
        if not extract or not limit:
            return None
        return 100 * record.requests.ok / extract / limit

    return percent


def _pct_429(record: RunRecord) -> float | None:
    total = record.requests.total
    return 100 * record.requests.with_status(429) / total if total else None


def _per_step(key: str, step: str) -> Callable[[RunRecord], float | None]:
    """A per-step figure the child reported (`step_peak_mb`, `step_cpu_s`) for one step."""

    def figure(record: RunRecord) -> float | None:
        value = record.details.get(key, {}).get(step)
        return None if value is None else float(value)

    return figure


def _detail(key: str) -> Callable[[RunRecord], float | None]:
    def value(record: RunRecord) -> float | None:
        found = record.details.get(key)
        return None if found is None else float(found)

    return value


def _max_per_resource(record: RunRecord) -> float | None:
    per_path = record.requests.per_path()
    return float(max(per_path.values())) if per_path else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _range(values: Sequence[float | None]) -> list[float] | None:
    """Lowest and highest of the values there are, None without any."""
    present = [v for v in values if v is not None]
    return [round(min(present), 3), round(max(present), 3)] if present else None


def summarize(results: Sequence[VariantResult]) -> list[Summary]:
    """One row per case, group and variant: medians, ratios, correctness.

    Args:
        results: What the runner collected.

    Returns:
        The rows, JSON-ready.
    """
    rows: list[Summary] = []
    for result in results:
        group = result.group
        row: Summary = {
            "case": result.case,
            "group": group.name,
            "variant": result.variant,
            "shape": group.shape,
            "size": group.size,
            "resources": list(group.resources),
            "latency_ms": group.latency_ms,
            "rate_limit": group.rate_limit,
            "runs_measured": len(result.runs),
            "ok": result.ok,
            "wall_s": _round(result.median(lambda r: r.wall_s)),
            "wall_range_s": _range([r.wall_s for r in result.runs]),
            "extract_s": _round(result.median(_step("extract"))),
            "normalize_s": _round(result.median(_step("normalize"))),
            "load_s": _round(result.median(_step("load"))),
            "requests": result.median(lambda r: r.requests.total),
            "status_429": result.median(lambda r: r.requests.with_status(429)),
            "peak_rss_mb": _round(result.median(lambda r: r.peak_rss_mb), 1),
            "step_peak_mb": {
                step: _round(result.median(_per_step("step_peak_mb", step)), 1)
                for step in ("extract", "normalize", "load")
            },
            "run_cpu_s": _round(result.median(_detail("run_cpu_s"))),
            "extract_cpu_s": _round(result.median(_per_step("step_cpu_s", "extract"))),
            "sandbox_cpu_s": _round(result.median(_detail("sandbox_cpu_s"))),
            "peak_in_flight": result.median(_detail("peak_in_flight")),
            "mean_in_flight": _round(result.median(_detail("mean_in_flight")), 1),
            "duckdb_memory_limit": group.duckdb_memory_limit,
            "rate_pct_of_limit": _round(result.median(_rate_pct(group.rate_limit)), 1),
            "pct_429": _round(result.median(_pct_429), 2),
            "max_requests_per_resource": result.median(_max_per_resource),
            "requests_per_path": {
                path: statistics.median([r.requests.per_path().get(path, 0) for r in result.runs])
                for path in sorted({p for r in result.runs for p in r.requests.per_path()})
            },
            "error": result.error,
            "runs": [record.as_json() for record in result.runs],
            "prepare": result.prepare.as_json() if result.prepare else None,
        }
        rows.append(row)
    for row in rows:
        for base in ("plain_default", "plain_jsonl", "plain_parallelized", "bare_threads"):
            peer = next(
                (
                    r
                    for r in rows
                    if (r["case"], r["group"], r["variant"]) == (row["case"], row["group"], base)
                ),
                None,
            )
            speedup = None
            if peer and peer["wall_s"] and row["wall_s"]:
                speedup = round(peer["wall_s"] / row["wall_s"], 2)
            if base == "bare_threads":
                # how many times the floor's wall the row's is: 1.2x = 20% slower than bare
                row["x_of_bare"] = None if speedup is None else round(1 / speedup, 2)
            else:
                row[f"x_{base}"] = speedup
    return rows


def evaluate_targets(rows: Sequence[Summary]) -> list[Summary]:
    """Checks every target against the support_api rows of its case.

    A target whose case did not run is `NOT RUN`; one whose runs loaded wrong rows is `FAIL`
    (its figures mean nothing); otherwise `PASS` or `MISS`.

    Args:
        rows: Summary rows.

    Returns:
        One entry per target and group.
    """
    outcomes: list[Summary] = []
    for target in TARGETS:
        mine = [r for r in rows if r["case"] == target.case and r["variant"] == "support_api"]
        if not mine:
            outcomes.append(_outcome(target, None, None, "NOT RUN"))
            continue
        for row in mine:
            value = row.get(target.metric)
            if not row["ok"]:
                status = "FAIL"
            elif value is None:
                status = "NO DATA"
            else:
                status = "PASS" if _COMPARE[target.op](value, target.bound) else "MISS"
            outcomes.append(_outcome(target, row["group"], value, status))
    return outcomes


def _outcome(target: Target, group: str | None, value: float | None, status: str) -> Summary:
    return {
        "case": target.case,
        "group": group,
        "metric": target.metric,
        "text": target.text,
        "op": target.op,
        "bound": target.bound,
        "unit": target.unit,
        "value": value,
        "status": status,
    }


def _num(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _notes(row: Summary) -> str:
    notes = [note for note in (_case_note(row), _cpu(row), _spread(row)) if note]
    return "; ".join(notes)


def _cpu(row: Summary) -> str:
    """CPU seconds of the run (every thread) and of its extract, and the sandbox's meanwhile.

    The sandbox runs on the same cores: where the run's CPU plus the sandbox's comes near
    the wall times the cores, the wall is bound by CPU, not by waiting.
    """
    if row["run_cpu_s"] is None:
        return ""
    return (
        f"cpu {row['run_cpu_s']:.2f} s (extract {_num(row['extract_cpu_s'])}),"
        f" sandbox {_num(row['sandbox_cpu_s'])} s"
    )


def _spread(row: Summary) -> str:
    """The range of the walls behind a median, when there are several (this machine's noise)."""
    span = row["wall_range_s"]
    if row["runs_measured"] < 2 or not span:
        return ""
    return f"walls {span[0]:.2f}-{span[1]:.2f} s"


def _case_note(row: Summary) -> str:
    if row["rate_limit"]:
        return (
            f"{_num(row['rate_pct_of_limit'], '.0f', '%')} of {row['rate_limit']} req/s,"
            f" {_num(row['pct_429'], '.1f', '%')} 429"
        )
    if row["case"] == "incremental_nochange":
        per_path = ", ".join(
            f"{path.rsplit('/', 1)[-1]}={_num(n, 'g')}"
            for path, n in row["requests_per_path"].items()
        )
        return f"requests/resource: {per_path or '-'}"
    if row["case"] == "children_latency20":
        return (
            f"x plain par {_num(row['x_plain_parallelized'], '.1f', 'x')},"
            f" wall {_num(row['x_of_bare'], '.2f', 'x')} bare's;"
            f" in flight mean {_num(row['mean_in_flight'], '.1f')}"
            f" peak {_num(row['peak_in_flight'], 'g')}"
        )
    if row["case"] == "rows_1m_memory":
        peaks = row["step_peak_mb"]
        limit = row["duckdb_memory_limit"] or "default"
        return (
            f"RSS peak in extract {_num(peaks['extract'], '.0f')} MB,"
            f" load {_num(peaks['load'], '.0f')} MB (DuckDB memory_limit {limit})"
        )
    return ""


COLUMNS: Final = (
    ("case/group", 34, "<"),
    ("variant", 18, "<"),
    ("n", 2, ">"),
    ("wall s", 7, ">"),
    ("extract", 7, ">"),
    ("normal.", 7, ">"),
    ("load", 7, ">"),
    ("req", 6, ">"),
    ("429", 4, ">"),
    ("peak MB", 7, ">"),
    ("rows", 4, "<"),
    ("x dflt", 6, ">"),
    ("x jsonl", 7, ">"),
    ("notes", 0, "<"),
)


def _line(cells: Sequence[str]) -> str:
    parts = [
        f"{cell:{align}{width}}" if width else cell
        for cell, (_, width, align) in zip(cells, COLUMNS, strict=True)
    ]
    return "  ".join(parts).rstrip()


def render_table(rows: Sequence[Summary]) -> str:
    """The results table (medians over measured runs).

    Args:
        rows: Summary rows.

    Returns:
        The table text.
    """
    lines = [_line([name for name, _, _ in COLUMNS])]
    lines.append("-" * len(lines[0]))
    for row in rows:
        cells = [
            f"{row['case']}/{row['group']}",
            row["variant"],
            str(row["runs_measured"]),
            _num(row["wall_s"]),
            _num(row["extract_s"]),
            _num(row["normalize_s"]),
            _num(row["load_s"]),
            _num(row["requests"], "g"),
            _num(row["status_429"], "g"),
            _num(row["peak_rss_mb"], ".0f"),
            "ok" if row["ok"] else "FAIL",
            _num(row["x_plain_default"], ".1f", "x"),
            _num(row["x_plain_jsonl"], ".1f", "x"),
            _notes(row),
        ]
        lines.append(_line(cells))
    return "\n".join(lines)


def render_targets(outcomes: Sequence[Summary]) -> str:
    """The targets with PASS / MISS / FAIL / NOT RUN.

    Args:
        outcomes: From `evaluate_targets`.

    Returns:
        The text.
    """
    lines = []
    for item in outcomes:
        where = item["case"] + (f"/{item['group']}" if item["group"] else "")
        value = _num(item["value"], ".3g", item["unit"])
        goal = f"{item['op']} {item['bound']:g}{item['unit']}"
        lines.append(f"{item['status']:<8} {where:<34} {item['text']}: {value} (target {goal})")
    return "\n".join(lines)


def render_failures(results: Sequence[VariantResult]) -> str:
    """Every run that loaded wrong rows or failed, loudly; empty when there is none.

    Args:
        results: What the runner collected.

    Returns:
        The text.
    """
    lines: list[str] = []
    for result in results:
        where = f"{result.case}/{result.group.name} {result.variant}"
        if result.error:
            lines.append(f"FAIL {where}: {result.error}")
        if not result.runs and not result.error and result.prepare is None:
            lines.append(f"FAIL {where}: no run")
        records = [*([result.prepare] if result.prepare else []), *result.runs]
        lines.extend(
            f"FAIL {where} {record.label}: {problem}"
            for record in records
            for problem in record.problems()
        )
    return "\n".join(lines)
