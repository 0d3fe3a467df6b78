"""Records on dlt's row path (nested lists and objects) load exactly as on plain dlt."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sources.support_api import arrow_pages, support_api_from_config
from tests.helpers import (
    FACTORIES,
    arrow_tables,
    desk_dict_config,
    loaded_tables,
    make_pipeline,
    table_rows,
)
from tests.sandbox import Fault


def column_order(pipeline) -> dict[str, list[str]]:
    schema = pipeline.default_schema
    return {table: list(schema.get_table_columns(table)) for table in schema.data_table_names()}


def orphans(pipeline, child: str, parent: str) -> list[tuple[Any, ...]]:
    """Child rows whose `_dlt_parent_id` or `_dlt_root_id` names no row of the parent."""
    with pipeline.sql_client() as client:
        child_table = client.make_qualified_table_name(child)
        parent_table = client.make_qualified_table_name(parent)
        query = (
            f"SELECT _dlt_id FROM {child_table} WHERE _dlt_parent_id NOT IN"  # noqa: S608 - test names
            f" (SELECT _dlt_id FROM {parent_table}) OR _dlt_root_id NOT IN"
            f" (SELECT _dlt_id FROM {parent_table})"
        )
        return [tuple(row) for row in client.execute_sql(query) or []]


def test_row_path_records_load_as_on_plain_dlt(sandbox_factory, tmp_path, monkeypatch):
    # a first batch of 30 records fails arrow; the pages after it come as dlt's pages
    monkeypatch.setattr(arrow_pages, "BATCH_ROWS", 30)
    results: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        # twin servers: the same data and the same changes for both
        server = sandbox_factory(seed=31, size=150, shape="desk", auth="api_key_query")
        config = desk_dict_config(
            server, ["tickets", "organizations"], primary_key="id", write_disposition="merge"
        )
        pipeline = make_pipeline(tmp_path, f"row_path_{name}")
        pipeline.run(factory(copy.deepcopy(config)))
        server.mutate(updates=9, creates=4, tables=["tickets", "organizations"])
        pipeline.run(factory(copy.deepcopy(config)))
        results[name] = (loaded_tables(pipeline), column_order(pipeline))
        for child in ("tickets__tags", "tickets__custom_fields"):
            assert orphans(pipeline, child, "tickets") == [], (name, child)
    assert results["ours"] == results["plain"]
    assert "tickets__tags" in results["ours"][1]  # nested lists: dlt's row path ran


def test_a_record_with_a_nested_object_keeps_the_row_path_column_order(sandbox_factory, tmp_path):
    results: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        server = sandbox_factory(seed=33, size=40, shape="desk", auth="api_key_query")
        rows = server.dataset.window("brands", 4).rows
        for position, row in enumerate(rows):
            # a nested object becomes columns that the row path puts before dlt's own
            row["via"] = {"channel": "email", "source": {"rel": position}}
            row["labels"] = ["a", "b"][: position % 3]
        body = json.dumps({"data": rows, "next_cursor": None})
        server.inject("/v1/brands", [Fault(status=200, body=body)])
        pipeline = make_pipeline(tmp_path, f"nested_object_{name}")
        pipeline.run(factory(desk_dict_config(server, ["brands"])))
        results[name] = (loaded_tables(pipeline), column_order(pipeline))
    assert results["ours"] == results["plain"]
    assert results["ours"][1]["brands"][-4:] == [
        "via__channel",
        "via__source__rel",
        "_dlt_load_id",
        "_dlt_id",
    ]


def test_a_merge_strategy_that_hashes_the_key_keeps_dlt_ids(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=35, size=60, shape="desk", auth="api_key_query")
    config = desk_dict_config(server, ["tickets"], primary_key="id")
    pipeline = make_pipeline(tmp_path, "upsert")
    ids: list[list[tuple[Any, ...]]] = []
    for _ in range(2):
        source = support_api_from_config(copy.deepcopy(config))
        # set after the source is built, as a pipeline script may do
        source.resources["tickets"].apply_hints(
            write_disposition={"disposition": "merge", "strategy": "upsert"}
        )
        pipeline.run(source)
        ids.append(table_rows(pipeline, "tickets", "id, _dlt_id"))
    # upsert derives `_dlt_id` from the primary key: the same rows keep the same ids
    assert ids[0] == ids[1]
    assert len(ids[0]) == len(server.dataset.ids("tickets"))


@pytest.mark.parametrize("where", ["source", "resource"])
def test_nested_values_kept_whole_go_as_arrow_and_load_as_on_plain_dlt(
    sandbox_factory, tmp_path, monkeypatch, capfd, where
):
    # several batches: the hints that make the nested columns `json` reach dlt with the first
    monkeypatch.setattr(arrow_pages, "BATCH_ROWS", 40)
    results: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        server = sandbox_factory(seed=37, size=150, shape="desk", auth="api_key_query")
        config = desk_dict_config(server, ["tickets"], primary_key="id", write_disposition="merge")
        if where == "resource":
            config["resources"][0]["max_table_nesting"] = 0
        pipeline = make_pipeline(tmp_path, f"nesting_{where}_{name}")
        formats = []
        for _ in range(2):
            source = factory(copy.deepcopy(config))
            if where == "source":
                source.max_table_nesting = 0  # set after the source is built, as scripts do
            pipeline.run(source)
            formats.append(arrow_tables(pipeline))
            server.mutate(updates=6, creates=3, tables=["tickets"])
        results[name] = (loaded_tables(pipeline), column_order(pipeline), formats)
    assert results["ours"][:2] == results["plain"][:2]
    # lists kept whole as `json`: no child tables, and arrow batches instead of dlt's rows
    assert list(results["ours"][1]) == ["tickets"]
    assert results["ours"][2] == [{"tickets"}, {"tickets"}]
    columns = dict(results["ours"][0]["tickets"]["columns"])
    assert columns["tags"]["data_type"] == columns["custom_fields"]["data_type"] == "json"
    # dlt's warning that arrow text differs from the `json` hint is expected, not logged
    assert "hints were different" not in capfd.readouterr().err
