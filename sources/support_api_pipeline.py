"""Pipelines for the support_api source: a short menu of scenarios.

Run `python support_api_pipeline.py` to load every resource into DuckDB
(`support_api.duckdb`, dataset `support_desk`). Configure the API in `.dlt/config.toml`
(`base_url`) and `.dlt/secrets.toml` (credentials), or with env vars.

Progress of long syncs is logged to stderr every 10 seconds. Set `SUPPORT_API_PROGRESS` to
`tqdm`, `enlighten` or `alive_progress` for progress bars (the package must be installed), or
to `none` for silence.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, cast, get_args

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.common.runtime.collector import NULL_COLLECTOR, LogCollector
from dlt.pipeline.progress import TCollectorArg, TSupportedCollectors
from support_api import support_api, support_api_from_config

PROGRESS_ENV = "SUPPORT_API_PROGRESS"
"""Env var choosing the progress display: `log` (default), `tqdm`, `enlighten`,
`alive_progress` or `none`."""

PROGRESS_LOG_PERIOD = 10.0
"""Seconds between two progress log lines."""


def progress() -> TCollectorArg:
    """The dlt progress collector picked by `SUPPORT_API_PROGRESS`.

    Returns:
        A collector, or the name of one of dlt's progress-bar collectors.

    Raises:
        SystemExit: If the env var names no known collector.
    """
    choice = os.environ.get(PROGRESS_ENV, "log").strip().lower() or "log"
    if choice == "none":
        return NULL_COLLECTOR
    if choice == "log":
        return LogCollector(
            log_period=PROGRESS_LOG_PERIOD, logger=sys.stderr, dump_system_stats=False
        )
    if choice in get_args(TSupportedCollectors):
        return cast("TSupportedCollectors", choice)
    sys.exit(f"{PROGRESS_ENV}={choice!r}: expected log, tqdm, enlighten, alive_progress or none")


def make_pipeline() -> dlt.Pipeline:
    """Creates the pipeline every scenario uses (`dlt init` rewrites its destination).

    Returns:
        The pipeline.
    """
    return dlt.pipeline(
        pipeline_name="support_api",
        destination="duckdb",
        dataset_name="support_desk",
        progress=progress(),
    )


def load_all() -> LoadInfo:
    """Loads every resource; later runs fetch only rows updated since the last run.

    Returns:
        The load info.
    """
    return make_pipeline().run(support_api())


def load_tickets_and_comments() -> LoadInfo:
    """Loads only `tickets` and `ticket_comments`.

    Returns:
        The load info.
    """
    return make_pipeline().run(support_api(resources=["tickets", "ticket_comments"]))


def backfill_window(start_date: str, end_date: str) -> LoadInfo:
    """Loads rows updated in `[start_date, end_date)`, without touching incremental state.

    Args:
        start_date: Inclusive lower bound, ISO 8601.
        end_date: Exclusive upper bound, ISO 8601.

    Returns:
        The load info.
    """
    source = support_api(start_date=start_date, end_date=end_date)
    return make_pipeline().run(source)


def load_from_dict(base_url: str) -> LoadInfo:
    """Loads tickets described by a rest_api-style dict (here: API key in the query).

    An example to adapt, not on the command line: it has none of the catalogue's column hints,
    so its `tickets` table differs from the one `load_all` writes into the same dataset.

    Args:
        base_url: The API root.

    Returns:
        The load info.
    """
    config: dict[str, Any] = {
        "client": {
            "base_url": base_url,
            "auth": {
                "type": "api_key",
                "name": "api_key",
                "api_key": dlt.secrets["sources.support_api.credentials.api_key"],
                "location": "query",
            },
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "tickets",
                "endpoint": {
                    "path": "/v1/tickets",
                    "data_selector": "data",
                    "paginator": {"type": "cursor", "cursor_path": "next_cursor", "limit": 100},
                    "error_handler": {"max_retries": 5, "backoff_factor": 1},
                },
            }
        ],
    }
    return make_pipeline().run(support_api_from_config(config))


def print_summary(pipeline: dlt.Pipeline, info: LoadInfo) -> None:
    """Prints the rows the last run loaded and the table sizes, per table, and the load info.

    Args:
        pipeline: The pipeline that ran.
        info: What its run returned.
    """
    normalize_info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    loaded = normalize_info.row_counts if normalize_info else {}
    print("Rows loaded by this run:")
    for table, count in sorted(loaded.items()):
        if not table.startswith("_dlt"):
            print(f"  {table:<24} {count:>8}")
    print("Rows in the destination:")
    for table, count in sorted(pipeline.dataset().row_counts().fetchall()):
        print(f"  {table:<24} {count:>8}")
    print(info)


def main() -> None:
    """Runs one scenario picked on the command line (default: load everything)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenario", nargs="?", default="all", choices=["all", "tickets", "backfill"]
    )
    parser.add_argument("--start-date", default="2024-01-01T00:00:00Z", help="backfill start")
    parser.add_argument("--end-date", default="2024-02-01T00:00:00Z", help="backfill end")
    args = parser.parse_args()
    if args.scenario == "tickets":
        info = load_tickets_and_comments()
    elif args.scenario == "backfill":
        info = backfill_window(args.start_date, args.end_date)
    else:
        info = load_all()
    print_summary(dlt.current.pipeline(), info)


if __name__ == "__main__":
    main()
