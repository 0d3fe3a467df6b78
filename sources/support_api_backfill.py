"""Backfills a date range in parallel: date windows loaded by separate processes as parquet.

    python support_api_backfill.py 2024-01-01 2024-07-01 --windows 6 --workers 3

splits `[start, end)` into equal windows and loads each one in its own process, with its own
dlt pipeline (`support_api_backfill_<window start>`), into dlt's filesystem destination as
parquet files: `<bucket_url>/support_desk/<table>/<load id>.<file id>.parquet`. The bucket is
`--bucket-url`, else `bucket_url` under `[destination.filesystem]` in `.dlt/config.toml` (env
var `DESTINATION__FILESYSTEM__BUCKET_URL`): a local folder or any fsspec URL (`s3://...`).

Each window gives the source `start_date` and `end_date`: the API is asked for that range
only and no incremental state is kept, so the windows never wait for each other. Rows are
appended; a record's updated timestamp lies in exactly one window, so the windows together
hold what one full load would. A failed window can be re-run alone with `--windows 1` and its
own bounds, after deleting the files of its failed load, if any.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import sys
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

import dlt
from dlt.common.destination import TDestinationReferenceArg
from dlt.common.time import ensure_pendulum_datetime
from support_api import support_api

DATASET_NAME = "support_desk"
TIMESTAMP_FORMAT = "YYYY-MM-DDTHH:mm:ss[Z]"
"""How window bounds are written, e.g. `2024-01-01T00:00:00Z`."""


def split_windows(start: str, end: str, count: int) -> list[tuple[str, str]]:
    """Splits `[start, end)` into `count` contiguous windows of (nearly) equal length.

    Args:
        start: Inclusive start, ISO 8601 (a date alone means midnight UTC).
        end: Exclusive end, ISO 8601.
        count: Number of windows.

    Returns:
        `(start, end)` pairs in UTC, each window starting where the previous one ends.

    Raises:
        ValueError: If `end` is not after `start` or `count` is not positive.
    """
    first, last = ensure_pendulum_datetime(start), ensure_pendulum_datetime(end)
    if last <= first:
        raise ValueError(f"end {end!r} is not after start {start!r}")
    if count < 1:
        raise ValueError(f"expected at least one window, got {count}")
    step = (last - first) / count
    bounds = [(first + step * i).replace(microsecond=0) for i in range(count)] + [last]
    texts = [bound.in_tz("UTC").format(TIMESTAMP_FORMAT) for bound in bounds]
    return [(lo, hi) for lo, hi in itertools.pairwise(texts) if lo < hi]


def load_window(start: str, end: str, bucket_url: str | None = None) -> dict[str, int]:
    """Loads the rows updated in `[start, end)` as parquet files (runs in a worker process).

    Args:
        start: Inclusive window start.
        end: Exclusive window end.
        bucket_url: Where the files go; None reads it from dlt config.

    Returns:
        Rows loaded, per table.
    """
    stamp = ensure_pendulum_datetime(start).format("YYYYMMDD_HHmmss")
    destination: TDestinationReferenceArg = (
        dlt.destinations.filesystem(bucket_url) if bucket_url else "filesystem"
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"support_api_backfill_{stamp}",
        destination=destination,
        dataset_name=DATASET_NAME,
    )
    source = support_api(start_date=start, end_date=end)
    pipeline.run(source, write_disposition="append", loader_file_format="parquet")
    info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = info.row_counts if info else {}
    return {table: count for table, count in counts.items() if not table.startswith("_dlt")}


def backfill(
    start: str, end: str, windows: int, workers: int, bucket_url: str | None = None
) -> list[tuple[str, str]]:
    """Loads `[start, end)` in `windows` windows, `workers` processes at a time.

    Args:
        start: Inclusive start of the range.
        end: Exclusive end of the range.
        windows: Number of windows.
        workers: Number of worker processes.
        bucket_url: Where the files go; None reads it from dlt config.

    Returns:
        The windows that failed (empty when all loaded).
    """
    failed = []
    # spawn: every worker starts a fresh interpreter, nothing of this process is shared
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures: dict[Future[dict[str, int]], tuple[str, str]] = {
            pool.submit(load_window, lo, hi, bucket_url): (lo, hi)
            for lo, hi in split_windows(start, end, windows)
        }
        for future in as_completed(futures):
            lo, hi = futures[future]
            try:
                counts = future.result()
            except Exception as error:  # noqa: BLE001 - report every failed window, go on
                failed.append((lo, hi))
                sys.stderr.write(f"[{lo}, {hi}) failed: {error}\n")
                continue
            loaded = ", ".join(f"{table} {count}" for table, count in sorted(counts.items()))
            sys.stdout.write(f"[{lo}, {hi}) loaded: {loaded or 'nothing new'}\n")
    return failed


def main() -> None:
    """Parses the command line and runs the backfill; exits non-zero if a window failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("start", help="inclusive start, e.g. 2024-01-01 or 2024-01-01T06:00:00Z")
    parser.add_argument("end", help="exclusive end")
    parser.add_argument("--windows", type=int, default=4, help="number of windows (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--bucket-url", help="folder or fsspec URL of the parquet files")
    args = parser.parse_args()
    try:
        failed = backfill(args.start, args.end, args.windows, args.workers, args.bucket_url)
    except ValueError as error:
        parser.error(str(error))
    if failed:
        sys.exit(f"{len(failed)} window(s) failed: " + ", ".join(f"[{a}, {b})" for a, b in failed))


if __name__ == "__main__":
    main()
