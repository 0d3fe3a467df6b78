"""Runs the cases: one sandbox process per group, one fresh child process per measured run.

Request counts come from the sandbox's stats route, read before and after each run; rows are
checked from the run's DuckDB file after the child has exited.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.bench.cases import Case, Group
from tests.bench.child import run_child
from tests.bench.sandbox_proc import RequestDelta, SandboxConfig, SandboxProcess, request_delta
from tests.bench.spec import DATASET_NAME, RESULT_FILE, SPEC_FILE, RunSpec, Variant
from tests.bench.verify import TableCheck, check_run

STEP_NAMES: Final = ("extract", "normalize", "load")
_NOT_COPIED: Final = (SPEC_FILE, RESULT_FILE, "stdout.txt", "stderr.txt")


@dataclass
class RunRecord:
    """One measured (or preparing) run.

    Attributes:
        label: `run1`, `run2`, ... or `prepare`.
        wall_s: Seconds of `pipeline.run`, None if it never started.
        steps: Seconds per pipeline step.
        peak_rss_mb: Peak RSS of the run's process (MiB).
        requests: Data requests the sandbox served during the run.
        checks: Loaded rows against the dataset, per table.
        error: Why the run failed, None when it succeeded.
        details: Other figures: what the child reported (import and setup time, row counts,
            CPU seconds of the run and of each step) and the sandbox's CPU seconds during it.
    """

    label: str
    wall_s: float | None
    steps: dict[str, float]
    peak_rss_mb: float
    requests: RequestDelta
    checks: list[TableCheck]
    error: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run succeeded and loaded exactly the expected rows."""
        return self.error is None and all(check.ok for check in self.checks)

    def problems(self) -> list[str]:
        """What went wrong, one line each."""
        lines = [f"error: {self.error.strip()}"] if self.error else []
        lines += [f"{c.table}: {c.problem}" for c in self.checks if c.problem]
        return lines

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "label": self.label,
            "ok": self.ok,
            "wall_s": self.wall_s,
            "steps": self.steps,
            "peak_rss_mb": self.peak_rss_mb,
            "requests": self.requests.as_json(),
            "checks": [check.as_json() for check in self.checks],
            "error": self.error,
            **self.details,
        }


@dataclass
class VariantResult:
    """Every run of one variant in one group of one case."""

    case: str
    group: Group
    variant: Variant
    runs: list[RunRecord] = field(default_factory=list)
    prepare: RunRecord | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every run (and the preparing run) loaded exactly the expected rows."""
        records = [*self.runs, *([self.prepare] if self.prepare else [])]
        return self.error is None and bool(self.runs) and all(r.ok for r in records)

    def median(self, value: Callable[[RunRecord], float | None]) -> float | None:
        """Median of a figure over the measured runs that have it."""
        values = [v for r in self.runs if (v := value(r)) is not None]
        return statistics.median(values) if values else None


Log = Callable[[str], None]


def _copy_prepared(source: Path, target: Path) -> None:
    shutil.copytree(
        source, target, ignore=lambda _dir, names: [n for n in names if n in _NOT_COPIED]
    )


def _in_flight(
    before: dict[str, Any], after: dict[str, Any], wall_s: float | None
) -> dict[str, float | None]:
    """Data requests the sandbox handled at once during a run: the most, and the mean.

    The mean is the sandbox's busy seconds (every request's handling time, latency included)
    over the run's wall: 16 means sixteen requests were being served, on average, the whole
    time. It covers the whole of `pipeline.run`, so a run's normalize and load lower it.
    """
    busy = after.get("busy_s", 0.0) - before.get("busy_s", 0.0)
    return {
        "peak_in_flight": after.get("peak_in_flight"),
        "busy_s": round(busy, 3),
        "mean_in_flight": round(busy / wall_s, 2) if wall_s else None,
    }


class Runner:
    """Runs cases and collects their results."""

    def __init__(
        self,
        workdir: Path,
        *,
        seed: int,
        repeat: int | None,
        plain_repeat: int,
        keep_runs: bool,
        log: Log,
    ) -> None:
        """Configures the runner.

        Args:
            workdir: Root of every run dir (`<workdir>/runs/...`).
            seed: Sandbox seed.
            repeat: Measured support_api runs (and plain jsonl runs where a target is a
                ratio to it); None uses each case's default.
            plain_repeat: Measured runs of the other plain variants.
            keep_runs: Keep run dirs (DuckDB files, pipeline state, logs) after checking.
            log: Progress output.
        """
        self.workdir = workdir
        self.seed = seed
        self.repeat = repeat
        self.plain_repeat = plain_repeat
        self.keep_runs = keep_runs
        self.log = log

    def repeats(self, case: Case, variant: Variant) -> int:
        """Measured runs of a variant in a case."""
        full = self.repeat if self.repeat is not None else case.default_repeat
        if variant == "support_api" or case.repeat_all:
            return full
        if variant == "plain_jsonl" and case.ratio_targets:
            return full
        return min(full, self.plain_repeat)

    def run_cases(self, cases: Sequence[Case]) -> list[VariantResult]:
        """Runs cases in order.

        Args:
            cases: The cases.

        Returns:
            Results per case, group and variant.
        """
        results: list[VariantResult] = []
        for case in cases:
            self.log(f"== {case.name}: {case.title}")
            for group in case.groups:
                results += self.run_group(case, group)
        return results

    def run_group(self, case: Case, group: Group) -> list[VariantResult]:
        """Starts the group's sandbox and runs each variant against it.

        Args:
            case: The case.
            group: The group.

        Returns:
            One result per variant.
        """
        group_dir = self.workdir / "runs" / case.name / group.name
        shutil.rmtree(group_dir, ignore_errors=True)
        group_dir.mkdir(parents=True)
        config = SandboxConfig(
            seed=self.seed,
            size=group.size,
            shape=group.shape,
            latency_ms=group.latency_ms,
            rate_limit=group.rate_limit,
        )
        results = [VariantResult(case.name, group, variant) for variant in group.variants]
        try:
            with SandboxProcess(config, group_dir / "sandbox.log") as sandbox:
                for result in results:
                    self._run_variant(case, group, sandbox, result, group_dir / result.variant)
        except RuntimeError as exc:
            self.log(f"   FAIL {case.name}/{group.name}: {exc}")
            for result in results:
                if not result.runs:
                    result.error = str(exc)
        if not self.keep_runs:
            shutil.rmtree(group_dir, ignore_errors=True)
        return results

    def _run_variant(
        self,
        case: Case,
        group: Group,
        sandbox: SandboxProcess,
        result: VariantResult,
        variant_dir: Path,
    ) -> None:
        prepared: Path | None = None
        if group.incremental:
            prepared = variant_dir / "prepare"
            prepared.mkdir(parents=True)
            result.prepare = self._measure(group, sandbox, result.variant, prepared, "prepare")
            self._report(case, group, result.variant, result.prepare, untimed=True)
            if not result.prepare.ok:
                return
        count = self.repeats(case, result.variant)
        for index in range(count):
            run_dir = variant_dir / f"run{index + 1}"
            if prepared is not None:
                _copy_prepared(prepared, run_dir)
            else:
                run_dir.mkdir(parents=True)
            record = self._measure(group, sandbox, result.variant, run_dir, f"run{index + 1}")
            result.runs.append(record)
            self._report(case, group, result.variant, record, of=count)
            if not self.keep_runs:
                shutil.rmtree(run_dir, ignore_errors=True)

    def _measure(
        self, group: Group, sandbox: SandboxProcess, variant: Variant, run_dir: Path, label: str
    ) -> RunRecord:
        spec = RunSpec(
            variant=variant,
            shape=group.shape,
            base_url=sandbox.url,
            seed=self.seed,
            resources=group.resources,
            incremental=group.incremental,
            run_dir=str(run_dir.resolve()),
            duckdb_memory_limit=group.duckdb_memory_limit,
            max_table_nesting=group.max_table_nesting,
            child_page_size=group.child_page_size,
        )
        before, cpu_before = sandbox.stats(reset_peak=True), sandbox.cpu_s()
        outcome = run_child(spec, group.timeout_s)
        after, cpu_after = sandbox.stats(), sandbox.cpu_s()
        checks = check_run(spec.db_path, DATASET_NAME, self.seed, group.size, group.resources)
        result = outcome.result
        details = {
            "process_s": outcome.process_s,
            "exit_code": outcome.exit_code,
            "import_s": result.get("import_s"),
            "setup_s": result.get("setup_s"),
            "self_maxrss_mb": result.get("self_maxrss_mb"),
            "children_maxrss_mb": result.get("children_maxrss_mb"),
            "normalized_rows": result.get("normalized_rows", {}),
            "step_peak_mb": result.get("step_peak_mb", {}),
            "run_cpu_s": result.get("run_cpu_s"),
            "step_cpu_s": result.get("step_cpu_s", {}),
            "sandbox_cpu_s": (
                None
                if cpu_before is None or cpu_after is None
                else round(cpu_after - cpu_before, 3)
            ),
            **_in_flight(before, after, result.get("wall_s")),
        }
        steps = {k: float(v) for k, v in result.get("steps", {}).items() if k in STEP_NAMES}
        wall = result.get("wall_s")
        return RunRecord(
            label=label,
            wall_s=None if wall is None else float(wall),
            steps=steps,
            peak_rss_mb=outcome.peak_rss_mb,
            requests=request_delta(before, after),
            checks=checks,
            error=outcome.error,
            details=details,
        )

    def _report(
        self,
        case: Case,
        group: Group,
        variant: Variant,
        record: RunRecord,
        *,
        of: int = 1,
        untimed: bool = False,
    ) -> None:
        where = f"{case.name}/{group.name} {variant}"
        which = "prepare (untimed)" if untimed else f"{record.label}/{of}"
        wall = "-" if record.wall_s is None else f"{record.wall_s:.2f}s"
        status = "rows ok" if record.ok else "FAIL"
        self.log(
            f"   {where} {which}: wall {wall}, peak {record.peak_rss_mb:.0f} MB,"
            f" {record.requests.total} requests ({record.requests.with_status(429)} x 429),"
            f" {status}"
        )
        for problem in record.problems():
            self.log(f"      FAIL {problem}")
