"""Records on dlt's row path get their `_dlt_id` a page at a time, and load as on plain dlt."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from dlt.common.normalizers.json import relational
from dlt.extract import DltSource
from dlt.sources.rest_api import rest_api_source

from sources.support_api import support_api_from_config
from sources.support_api.row_ids import RowIds
from tests.helpers import desk_dict_config, loaded_tables, make_pipeline, table_rows
from tests.sandbox import Fault

FACTORIES: dict[str, Callable[[Any], DltSource]] = {
    "plain": rest_api_source,
    "ours": support_api_from_config,
}


@pytest.fixture
def drawn_ids(monkeypatch) -> Counter[str]:
    """Root rows per table whose `_dlt_id` dlt's normalizer fills (random, or a hash)."""
    drawn: Counter[str] = Counter()
    add_row_id = relational.DataItemNormalizer._add_row_id

    def counted(
        self: Any, table: str, row: Any, flat: Any, parent: Any, pos: Any, is_root: bool
    ) -> str:
        if is_root and not table.startswith("_dlt"):  # dlt's state row aside
            drawn[table] += 1
        return add_row_id(self, table, row, flat, parent, pos, is_root)

    monkeypatch.setattr(relational.DataItemNormalizer, "_add_row_id", counted)
    return drawn


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


def test_row_path_records_bring_their_ids_and_load_as_on_plain_dlt(
    sandbox_factory, tmp_path, drawn_ids
):
    results: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        # twin servers: the same data and the same changes for both
        server = sandbox_factory(seed=31, size=150, shape="desk", auth="api_key_query")
        config = desk_dict_config(
            server, ["tickets", "organizations"], primary_key="id", write_disposition="merge"
        )
        pipeline = make_pipeline(tmp_path, f"row_ids_{name}")
        drawn_ids.clear()
        pipeline.run(factory(copy.deepcopy(config)))
        results[f"{name}_drawn"] = dict(drawn_ids)
        server.mutate(updates=9, creates=4, tables=["tickets", "organizations"])
        pipeline.run(factory(copy.deepcopy(config)))
        results[name] = (loaded_tables(pipeline), column_order(pipeline))
        for child in ("tickets__tags", "tickets__custom_fields"):
            assert orphans(pipeline, child, "tickets") == [], (name, child)
    assert results["ours"] == results["plain"]
    assert "tickets__tags" in results["ours"][1]  # nested lists: dlt's row path ran
    tickets = len(server.dataset.ids("tickets")) - 4  # before the 4 created
    organizations = len(server.dataset.ids("organizations")) - 4
    # plain dlt draws one id per root row; ours draws a page of them at once at extract,
    # except for records with a nested object (organization_fields), whose ids stay dlt's
    assert results["plain_drawn"] == {"tickets": tickets, "organizations": organizations}
    assert results["ours_drawn"] == {"organizations": organizations}


def test_a_record_with_a_nested_object_keeps_the_row_path_column_order(
    sandbox_factory, tmp_path, drawn_ids
):
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
        drawn_ids.clear()
        pipeline.run(factory(desk_dict_config(server, ["brands"])))
        drawn = drawn_ids["brands"] == len(rows)  # those rows' ids are left to dlt
        results[name] = (loaded_tables(pipeline), column_order(pipeline), drawn)
    assert results["ours"] == results["plain"]
    assert results["ours"][1]["brands"][-4:] == [
        "via__channel",
        "via__source__rel",
        "_dlt_load_id",
        "_dlt_id",
    ]
    assert results["ours"][2] is True


def test_a_merge_strategy_that_hashes_the_key_keeps_dlt_ids(sandbox_factory, tmp_path, drawn_ids):
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


def test_outside_a_pipeline_records_are_left_alone():
    records = [{"id": 1}, {"id": 2}]
    assert RowIds(lambda: None, lambda: None).add(records) == [{"id": 1}, {"id": 2}]
