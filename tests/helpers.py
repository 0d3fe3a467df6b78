"""Helpers shared by the end-to-end tests: pipelines in tmp folders and table reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.extract import DltSource
from dlt.sources.rest_api import rest_api_source

from sources.support_api import support_api_from_config

FACTORIES: Final[dict[str, Callable[[Any], DltSource]]] = {
    "plain": rest_api_source,
    "ours": support_api_from_config,
}
"""Source builders compared by the parity tests: plain dlt's `rest_api_source` and ours."""


def desk_dict_config(server: Any, tables: Sequence[str], **resource_hints: Any) -> dict[str, Any]:
    """A rest_api-style dict reading `tables` of a `desk` sandbox, written as a user would.

    The API key goes in the query; pages are cursor-paged under `data`. `resource_hints`
    (e.g. `primary_key`) are set on every resource.
    """
    auth = {"type": "api_key", "name": "api_key", "api_key": server.secrets.api_key}
    return {
        "client": {"base_url": server.url, "auth": auth | {"location": "query"}},
        "resources": [
            {
                "name": table,
                "endpoint": {
                    "path": f"/v1/{table}",
                    "data_selector": "data",
                    "paginator": {
                        "type": "cursor",
                        "cursor_path": "next_cursor",
                        "cursor_param": "cursor",
                    },
                },
                **resource_hints,
            }
            for table in tables
        ],
    }


def make_pipeline(tmp_path: Path, name: str = "support_api_test") -> dlt.Pipeline:
    """A DuckDB pipeline whose state and database live under `tmp_path`."""
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
        dataset_name="support_desk",
    )


def table_rows(pipeline: dlt.Pipeline, table: str, columns: str = "id") -> list[tuple[Any, ...]]:
    """All rows of `table` (selected `columns`), ordered by the first column."""
    with pipeline.sql_client() as client:
        qualified = client.make_qualified_table_name(table)
        first = columns.split(",", maxsplit=1)[0]
        query = f"SELECT {columns} FROM {qualified} ORDER BY {first}"  # noqa: S608 - test-controlled names
        return [tuple(row) for row in client.execute_sql(query) or []]


def table_ids(pipeline: dlt.Pipeline, table: str) -> list[int]:
    """Ids of `table` in ascending order (duplicates kept, so tests can see them)."""
    return [row[0] for row in table_rows(pipeline, table)]


def loaded_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows the last run normalized, per data table."""
    info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = info.row_counts if info else {}
    return {k: v for k, v in counts.items() if not k.startswith("_dlt")}


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it, once each: `__cause__`, `__context__` and the
    exceptions dlt and exception groups wrap (`exceptions`)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__])
        stack.extend(getattr(current, "exceptions", None) or [])


def find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first `kind` in the exception chain of `exc` (itself included), None without one."""
    return next((current for current in exception_chain(exc) if isinstance(current, kind)), None)


def chain_text(exc: BaseException) -> str:
    """Every message and repr in the exception chain (causes, contexts, wrapped exceptions)."""
    return "\n".join(
        part for current in exception_chain(exc) for part in (str(current), repr(current))
    )


def loaded_files(pipeline: dlt.Pipeline) -> set[tuple[str, str]]:
    """(table, file format) of every job the pipeline's last run loaded, dlt's tables left out.

    Merge follow-up jobs show as the `sql` format.
    """
    trace = pipeline.last_trace
    info = trace.last_load_info if trace is not None else None
    assert info is not None, "the pipeline has not loaded"
    return {
        (job.job_file_info.table_name, job.job_file_info.file_format)
        for package in info.load_packages
        for job in package.jobs["completed_jobs"]
        if not job.job_file_info.table_name.startswith("_dlt")
    }


def loaded_file_formats(pipeline: dlt.Pipeline) -> set[str]:
    """Formats of the data files the last run loaded (merge follow-up `sql` jobs left out)."""
    return {file_format for _, file_format in loaded_files(pipeline)} - {"sql"}


def extracted_files(pipeline: dlt.Pipeline) -> set[tuple[str, str]]:
    """(table, file format) of every file the pipeline's last extract wrote, dlt's tables left out.

    Arrow tables are written as `parquet`, records as `typed-jsonl` (whatever format they
    load from later).
    """
    trace = pipeline.last_trace
    info = trace.last_extract_info if trace is not None else None
    assert info is not None, "the pipeline has not extracted"
    files: set[tuple[str, str]] = set()
    for metrics in info.metrics.values():
        for step in metrics:
            for name in step["job_metrics"]:
                table, _, file_format = name.removesuffix(".gz").split(".", 2)
                if not table.startswith("_dlt"):
                    files.add((table, file_format))
    return files


def arrow_tables(pipeline: dlt.Pipeline) -> set[str]:
    """Tables the last extract received as arrow tables (not as records)."""
    return {table for table, file_format in extracted_files(pipeline) if file_format == "parquet"}


RANDOM_IDS = ("_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_root_id")
"""Columns dlt fills with ids that differ from run to run."""


def column_props(column: Mapping[str, Any]) -> dict[str, Any]:
    """A column's properties as dlt's schema holds them: `nullable` spelled out, no name."""
    props = {key: value for key, value in column.items() if key != "name"}
    props["nullable"] = props.get("nullable", True)
    return props


def loaded_tables(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """Every data table's columns, in order, with all their properties (type, nullable, hints
    such as `unique`) and its rows without dlt's random ids."""
    schema = pipeline.default_schema
    tables: dict[str, Any] = {}
    for table in schema.data_table_names():
        columns = schema.get_table_columns(table)
        names = [name for name in columns if name not in RANDOM_IDS]
        rows = table_rows(pipeline, table, ", ".join(f'"{name}"' for name in names))
        tables[table] = {
            "columns": [(name, column_props(column)) for name, column in columns.items()],
            "rows": sorted(rows, key=repr),
        }
    return tables
