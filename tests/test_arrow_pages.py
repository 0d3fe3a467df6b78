"""Arrow batches load exactly what dlt's row path loads; anything else stays on the row path."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.common.schema import Schema
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import arrow_pages, support_api, support_api_from_config
from sources.support_api import resources as support_resources
from sources.support_api.arrow_pages import (
    JSON_AS_TEXT_WARNINGS,
    ArrowBatches,
    only_json_as_text_differs,
)
from tests.helpers import arrow_tables, desk_dict_config, make_pipeline, table_rows
from tests.sandbox import TABLES

HINTS = {
    "id": {"data_type": "bigint"},
    "tags": {"data_type": "json"},
    "updated_at": {"data_type": "timestamp"},
}


def batcher(schema: Schema | None = None) -> ArrowBatches:
    return ArrowBatches("tickets", "updated_at", HINTS, lambda: schema or Schema("t"))


def record(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "updated_at": "2024-01-01T00:00:00Z", **fields}


def test_a_batch_becomes_one_table_with_the_row_path_types():
    rows = [
        record(id=1, score=1.5, open=True, subject="a", tags=["x"], due="2024-02-01T10:00:00Z"),
        record(id=2, score=2, open=None, subject=None, tags=None, due=None, extra="late"),
    ]
    (table,) = list(batcher().batches([rows[:1], rows[1:]], rows=10))
    assert isinstance(table, pa.Table)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["id"] == "int64"
    assert types["score"] == "double"  # an int in a double column is widened, as dlt does
    assert types["open"] == "bool"
    assert types["subject"] == "string"
    assert types["tags"] == "string"  # JSON text
    assert types["due"] == "timestamp[us, tz=UTC]"  # detected like dlt's iso_timestamp
    assert types["updated_at"] == "string"  # the cursor stays text until after the incremental
    assert table.column("tags").to_pylist() == ['["x"]', None]
    assert table.column("extra").to_pylist() == [None, "late"]


@pytest.mark.parametrize(
    "rows",
    [
        [record(count=1), record(count="two")],  # a variant column on the row path
        [record(score=1), record(score=2.5)],  # bigint first: 2.5 is a variant on the row path
        [record(nested={"a": 1})],  # flattened into nested__a on the row path
        [record(items=[1, 2])],  # a child table on the row path
        [record(tags="not a list")],  # a scalar in a json column
        [record(CamelCase=1)],  # renamed by the naming convention
        [record(id="1")],  # text in a bigint column
        [record(due="2024-02-01T10:00:00Z"), record(due="soon")],  # not a timestamp
        [record(big=2**70)],  # beyond bigint
    ],
)
def test_batches_arrow_would_load_differently_stay_records(rows):
    (batch,) = list(batcher().batches([rows], rows=10))
    assert batch == rows


def test_after_a_batch_stays_records_the_rest_go_page_by_page():
    nested = [record(id=i, items=[i]) for i in range(3)]
    flat = [[record(id=i)] for i in range(3, 6)]
    out = list(batcher().batches([nested[:2], nested[2:], *flat], rows=3))
    assert out == [nested, *flat]  # no arrow attempt (nor a 3-row wait) for pages after


def test_new_columns_are_ordered_as_the_row_path_adds_them(monkeypatch):
    rows = [
        {"id": 1, "phone": None, "name": "a", "updated_at": "2024-01-01T00:00:00Z"},
        {"id": 2, "phone": "555", "name": None, "email": "e", "updated_at": "2024-01-02T00:00:00Z"},
    ]
    batches = ArrowBatches("customers", None, {}, lambda: Schema("t"))
    (table,) = list(batches.batches([rows], rows=10))
    assert table.column_names == ["id", "name", "updated_at", "phone", "email"]
    # dlt's columns come with the first record's, before columns first seen in a later one
    monkeypatch.setattr(dlt.current, "load_package_state", lambda: {"load_id": "1.5"})
    with_ids = batches.finish_batch(table)
    assert with_ids.column("_dlt_load_id").to_pylist() == ["1.5", "1.5"]
    assert with_ids.column_names == [
        "id",
        "name",
        "updated_at",
        "_dlt_load_id",
        "_dlt_id",
        "phone",
        "email",
    ]


def test_a_column_keeps_its_type_from_an_earlier_table_the_schema_has_not_seen_yet():
    # dlt may extract a table after the next batch is converted: the schema lacks its columns
    batches = batcher()
    first, second = batches.batches([[record(score=1)], [record(id=2, score=2.5)]], rows=1)
    assert first.column("score").type == pa.int64()
    assert second == [record(id=2, score=2.5)]  # 2.5 is a variant of a bigint column


def test_types_already_in_the_schema_win_over_the_first_value():
    schema = Schema("t")
    schema.update_table(
        {"name": "tickets", "columns": {"code": {"name": "code", "data_type": "text"}}}
    )
    (batch,) = list(batcher(schema).batches([[record(code=5)]], rows=10))
    assert batch == [record(code=5)]  # text column, int value: the row path decides
    (table,) = list(batcher(schema).batches([[record(code="5")]], rows=10))
    assert table.column("code").to_pylist() == ["5"]


def source(server, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(base_url=server.url, credentials=credentials, **kwargs)


def columns_of(pipeline) -> dict[str, dict[str, tuple[str | None, bool]]]:
    schema = pipeline.default_schema
    return {
        table: {
            name: (column.get("data_type"), bool(column.get("nullable", True)))
            for name, column in schema.get_table_columns(table).items()
        }
        for table in TABLES
    }


def values_of(pipeline, table: str) -> list[tuple[Any, ...]]:
    schema = pipeline.default_schema
    names = [n for n in schema.get_table_columns(table) if not n.startswith("_dlt")]
    return table_rows(pipeline, table, ", ".join(names))


def test_arrow_and_row_paths_load_the_same_tables(sandbox_factory, tmp_path, monkeypatch):
    server = sandbox_factory(seed=6, size=600, shape="desk")
    arrow = make_pipeline(tmp_path, "arrow")
    arrow.run(source(server))
    assert "tickets" in arrow_tables(arrow)

    monkeypatch.setattr(support_resources, "loads_parquet", lambda: False)
    rows = make_pipeline(tmp_path, "rows")
    rows.run(source(server))
    assert arrow_tables(rows) == set()

    assert columns_of(arrow) == columns_of(rows)
    for table in TABLES:
        assert values_of(arrow, table) == values_of(rows, table)
        with arrow.sql_client() as client:
            table_name = client.make_qualified_table_name(table)
            nulls = client.execute_sql(
                f"SELECT count(*) FROM {table_name} WHERE _dlt_id IS NULL"  # noqa: S608 - test names
                " OR _dlt_load_id IS NULL"
            )
        assert nulls == [(0,)]

    # incremental runs on both paths pick up the same changes
    server.mutate(updates=15, creates=4, deletes=3, same_second=True)
    arrow.run(source(server))
    rows.run(source(server))
    for table in TABLES:
        assert values_of(arrow, table) == values_of(rows, table)


def test_a_step_the_user_adds_receives_records(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=8, size=120, shape="desk")
    seen: list[type] = []

    def remember(item: Any) -> Any:
        seen.append(type(item))
        return item

    plain = source(server, resources=["tickets"])
    plain.resources["tickets"].add_map(remember)
    pipeline = make_pipeline(tmp_path, "with_map")
    pipeline.run(plain)
    assert seen
    assert set(seen) == {dict}  # one record at a time, as plain dlt hands them
    assert arrow_tables(pipeline) == set()
    assert table_rows(pipeline, "tickets") == [(i,) for i in sorted(server.dataset.ids("tickets"))]

    seen.clear()
    untouched = make_pipeline(tmp_path, "without_map")
    untouched.run(source(server, resources=["tickets"]))
    assert seen == []
    assert arrow_tables(untouched) == {"tickets"}


def test_the_primary_key_is_not_nullable_in_arrow_as_in_dlt(sandbox_factory, tmp_path, capfd):
    server = sandbox_factory(seed=9, size=80, shape="desk")
    config = desk_dict_config(server, ["customers"])
    config["resource_defaults"] = {"primary_key": "id", "write_disposition": "merge"}
    pipeline = make_pipeline(tmp_path, "primary_key")
    pipeline.run(support_api_from_config(config))
    assert arrow_tables(pipeline) == {"customers"}
    # dlt warns when arrow's hints differ from the resource's (here: a nullable primary key)
    assert "hints were different" not in capfd.readouterr().err
    assert pipeline.default_schema.get_table_columns("customers")["id"]["nullable"] is False


def test_json_columns_as_arrow_text_log_no_warning_per_batch(
    sandbox_factory, tmp_path, capfd, monkeypatch
):
    server = sandbox_factory(seed=9, size=450, shape="desk")
    pipeline = make_pipeline(tmp_path, "json_columns")
    plain = source(server, resources=["tickets"])
    plain.resources["tickets"].add_map(lambda page: page)  # records: the row path, to compare
    pipeline.run(plain)
    fast = make_pipeline(tmp_path, "json_columns_arrow")
    monkeypatch.setattr(arrow_pages, "BATCH_ROWS", 100)  # several batches, each warned of
    fast.run(source(server, resources=["tickets"]))
    assert arrow_tables(fast) == {"tickets"}
    # dlt warned on every batch: the resource's `json` hint differs from arrow's text
    assert "hints were different" not in capfd.readouterr().err
    for name in ("tags", "custom_fields"):
        assert fast.default_schema.get_table_columns("tickets")[name]["data_type"] == "json"
    columns = "id, tags, custom_fields"
    assert table_rows(fast, "tickets", columns) == table_rows(pipeline, "tickets", columns)


def test_only_a_json_column_as_text_is_an_expected_difference():
    no_cursor = ArrowBatches("tickets", None, HINTS, lambda: Schema("t"))
    table = no_cursor.to_arrow([record(id=1, tags=["x"]), record(id=2, tags=None)])
    assert only_json_as_text_differs(table, HINTS)
    assert not only_json_as_text_differs(table, {"id": {"data_type": "bigint"}})
    # any other difference (here milliseconds declared, microseconds in arrow) still warns
    precise: dict[str, dict[str, Any]] = {
        **HINTS,
        "updated_at": {"data_type": "timestamp", "precision": 3},
    }
    assert not only_json_as_text_differs(table, precise)


def test_the_filter_drops_one_announced_warning_of_that_resource_only():
    def warning(resource: str) -> logging.LogRecord:
        message = (
            f"In resource: {resource}, when merging arrow schema with dlt schema, several"
            " column hints were different."
        )
        return logging.LogRecord("dlt", logging.WARNING, __file__, 1, message, None, None)

    JSON_AS_TEXT_WARNINGS.expect("tickets")
    assert JSON_AS_TEXT_WARNINGS.filter(warning("tickets_archive"))
    assert JSON_AS_TEXT_WARNINGS.filter(warning("comments"))
    assert not JSON_AS_TEXT_WARNINGS.filter(warning("tickets"))
    assert JSON_AS_TEXT_WARNINGS.filter(warning("tickets"))  # announced once, dropped once


def test_a_null_in_the_primary_key_leaves_the_batch_to_the_row_path():
    batches = ArrowBatches("tickets", None, {}, lambda: Schema("t"), primary_key=("id",))
    rows = [{"id": 1, "name": "a"}, {"id": None, "name": "b"}]
    (batch,) = list(batches.batches([rows], rows=10))
    assert batch == rows
    (table,) = list(batches.batches([rows[:1]], rows=10))
    assert table.schema.field("id").nullable is False


def test_add_limit_still_counts_pages(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=10, size=400, shape="desk")
    limited = source(server, resources=["tickets"], page_size=20, concurrency=1).add_limit(3)
    pipeline = make_pipeline(tmp_path, "limited")
    pipeline.run(limited)
    # three pages of 20, not three batches of up to 5,000 rows
    assert len(table_rows(pipeline, "tickets")) == 60


def test_a_pyarrow_import_under_way_in_another_thread_is_no_table(monkeypatch):
    # while one thread imports pyarrow, the others find its module without `Table` yet
    monkeypatch.setitem(sys.modules, "pyarrow", types.ModuleType("pyarrow"))
    assert arrow_pages.is_arrow_table([{"id": 1}]) is False


CHILD_RUN = """
import sys

import dlt

from sources.support_api import support_api_from_config
from tests.test_plain_dlt_parity import plain_config

assert "pyarrow" not in sys.modules, "the premise: nothing imported pyarrow yet"
url, api_key, folder = sys.argv[1:4]
config = plain_config(url, api_key)
config["resources"][2] = {"name": "brands", "endpoint": {"path": "/v1/brands"}}
pipeline = dlt.pipeline(
    "fresh", destination=dlt.destinations.duckdb(folder + "/destination.duckdb"),
    pipelines_dir=folder, dataset_name="desk",
)
pipeline.run(support_api_from_config(config))
print(sorted(pipeline.last_trace.last_normalize_info.row_counts))
"""


def test_a_fresh_process_imports_pyarrow_before_parallel_resources_extract(
    sandbox_factory, tmp_path
):
    # `agents` (read by `agent_groups`) yields records on dlt's extract loop while `brands`,
    # in a worker thread, makes the first arrow table: pyarrow half imported there failed
    # the loop's check of an `agents` item
    server = sandbox_factory(seed=21, size=150, shape="desk", auth="api_key_query")
    child = subprocess.run(  # noqa: S603 - our own interpreter running our own script
        [sys.executable, "-c", CHILD_RUN, server.url, server.secrets.api_key, str(tmp_path)],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "'brands'" in child.stdout
