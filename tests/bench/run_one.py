"""One measured pipeline run, in its own process: `python -m tests.bench.run_one SPEC_FILE`.

Builds the variant's source, times `pipeline.run` and reads the step durations from the
trace, then writes one JSON line to the spec's result file and to stdout. Rows are counted
and checked by the parent after this process exits, from the DuckDB file, so the check does
not add to this process's peak memory.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Self

from tests.bench.spec import DATASET_NAME, RESULT_FILE, RunSpec

STEPS: Final = ("extract", "normalize", "load")
MAX_ERROR_CHARS: Final = 4000
RSS_SAMPLE_S: Final = 0.05


class RssSampler:
    """Samples this process's RSS and CPU time in a thread, to tell each pipeline step's."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, float]] = []
        """(epoch time, RSS in KiB, CPU seconds of the process: every thread, user + system)"""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), _rss_kib(), time.process_time()))
            if self._stop.wait(RSS_SAMPLE_S):
                # one more at the stop, so the samples cover the end of the last step
                self.samples.append((time.time(), _rss_kib(), time.process_time()))
                return

    def peak_mb(self, start: float, end: float) -> float | None:
        """The highest sample taken between two epoch times, in MiB."""
        inside = [kib for at, kib, _ in self.samples if start <= at <= end]
        return _kib_to_mb(max(inside)) if inside else None

    def cpu_s(self, start: float, end: float) -> float | None:
        """CPU seconds the process used between two epoch times.

        Read between the samples around each time, so it is good to a sample's worth of CPU
        (`RSS_SAMPLE_S` per core at most); None unless samples cover both times.
        """
        at_end, at_start = self._cpu_at(end), self._cpu_at(start)
        if at_end is None or at_start is None:
            return None
        return round(at_end - at_start, 3)

    def _cpu_at(self, moment: float) -> float | None:
        """The process's CPU time at `moment`, interpolated between the samples around it."""
        for (t0, _, cpu0), (t1, _, cpu1) in zip(self.samples, self.samples[1:], strict=False):
            if t0 <= moment <= t1:
                share = (moment - t0) / (t1 - t0) if t1 > t0 else 1.0
                return cpu0 + share * (cpu1 - cpu0)
        return None


def _rss_kib() -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _kib_to_mb(kib: int) -> float:
    return round(kib / 1024, 1)


def execute(spec_path: Path) -> dict[str, Any]:
    """Runs the pipeline of a spec and describes what happened.

    Args:
        spec_path: The spec file.

    Returns:
        The JSON-ready result: `wall_s` (whole `pipeline.run`), `steps` (seconds per step),
        `normalized_rows` (per table, from the trace), `setup_s`, `import_s`, `self_maxrss_mb`,
        `step_peak_mb` (highest RSS sampled during each step), `run_cpu_s` (CPU seconds of
        the whole `pipeline.run`, every thread), `step_cpu_s` (the same per step) and `error`
        (None when the run succeeded).
    """
    started = time.perf_counter()
    import dlt  # noqa: PLC0415 - import time is measured separately from the run

    from tests.bench.variants import build_source, loader_file_format  # noqa: PLC0415 - same

    imported = time.perf_counter()
    spec = RunSpec.load(spec_path)
    if spec.variant == "bare_threads":
        return execute_bare(spec, import_s=round(imported - started, 3))
    result: dict[str, Any] = {
        "variant": spec.variant,
        "import_s": round(imported - started, 3),
        "wall_s": None,
        "steps": {},
        "normalized_rows": {},
        "error": None,
        "step_peak_mb": {},
        "step_cpu_s": {},
        "run_cpu_s": None,
    }
    sampler = RssSampler()
    credentials: Any = str(spec.db_path)
    if spec.duckdb_memory_limit is not None:
        from dlt.destinations.impl.duckdb.configuration import (  # noqa: PLC0415 - as above
            DuckDbCredentials,
        )

        credentials = DuckDbCredentials(
            credentials, global_config={"memory_limit": spec.duckdb_memory_limit}
        )
    pipeline = dlt.pipeline(
        pipeline_name=spec.pipeline_name,
        destination=dlt.destinations.duckdb(credentials),
        dataset_name=DATASET_NAME,
        pipelines_dir=str(spec.pipelines_dir),
    )
    try:
        source = build_source(spec)
        file_format = loader_file_format(spec)
        ready = time.perf_counter()
        result["setup_s"] = round(ready - imported, 3)
        cpu_before = time.process_time()
        try:
            with sampler:
                if file_format is None:
                    pipeline.run(source)
                else:
                    pipeline.run(source, loader_file_format=file_format)
        finally:
            result["wall_s"] = round(time.perf_counter() - ready, 3)
            result["run_cpu_s"] = round(time.process_time() - cpu_before, 3)
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the result, not raised
        text = "".join(traceback.format_exception(exc))
        result["error"] = text[-MAX_ERROR_CHARS:]
    trace = pipeline.last_trace
    if trace is not None:
        for step in trace.steps:
            if step.step in STEPS and step.started_at and step.finished_at:
                elapsed = (step.finished_at - step.started_at).total_seconds()
                result["steps"][step.step] = round(elapsed, 3)
                span = (step.started_at.timestamp(), step.finished_at.timestamp())
                result["step_peak_mb"][step.step] = sampler.peak_mb(*span)
                result["step_cpu_s"][step.step] = sampler.cpu_s(*span)
        info = trace.last_normalize_info
        if info is not None:
            result["normalized_rows"] = {
                table: count
                for table, count in info.row_counts.items()
                if not table.startswith("_dlt")
            }
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["self_maxrss_mb"] = _kib_to_mb(usage_self.ru_maxrss)
    result["children_maxrss_mb"] = _kib_to_mb(usage_children.ru_maxrss)
    return result


def execute_bare(spec: RunSpec, import_s: float) -> dict[str, Any]:
    """Runs the bare threaded client of a spec (no pipeline) and describes what happened.

    Args:
        spec: The run.
        import_s: Seconds the imports took.

    Returns:
        The same keys as `execute`: `wall_s` is the reading alone (the ids are written to the
        run's DuckDB file afterwards, for the row check), `steps` is empty, and
        `normalized_rows` holds the rows read per table.
    """
    from tests.bench.bare import BareClient, store_ids  # noqa: PLC0415 - as in `execute`

    result: dict[str, Any] = {
        "variant": spec.variant,
        "import_s": import_s,
        "setup_s": 0.0,
        "wall_s": None,
        "steps": {},
        "normalized_rows": {},
        "error": None,
        "step_peak_mb": {},
        "step_cpu_s": {},
        "run_cpu_s": None,
    }
    client = BareClient(spec)
    started, cpu_before = time.perf_counter(), time.process_time()
    try:
        try:
            ids = client.read()
        finally:
            result["wall_s"] = round(time.perf_counter() - started, 3)
            result["run_cpu_s"] = round(time.process_time() - cpu_before, 3)
        result["normalized_rows"] = {table: len(values) for table, values in ids.items()}
        result["client_requests"] = client.requests
        store_ids(spec.db_path, DATASET_NAME, ids)
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the result, not raised
        result["error"] = "".join(traceback.format_exception(exc))[-MAX_ERROR_CHARS:]
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    result["self_maxrss_mb"] = _kib_to_mb(usage_self.ru_maxrss)
    result["children_maxrss_mb"] = 0.0
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one spec and writes its result.

    Args:
        argv: `[SPEC_FILE]`; None reads `sys.argv`.

    Returns:
        0 when the run succeeded, 1 when it failed, 2 on a usage error.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m tests.bench.run_one SPEC_FILE\n")
        return 2
    spec_path = Path(args[0])
    result = execute(spec_path)
    line = json.dumps(result)
    (spec_path.parent / RESULT_FILE).write_text(line + "\n")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
