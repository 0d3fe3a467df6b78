"""A config that already works on plain dlt `rest_api_source` behaves the same here."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

from dlt.common.schema.typing import TSimpleRegex
from dlt.extract import DltResource

from tests.helpers import (
    FACTORIES,
    arrow_tables,
    desk_dict_config,
    loaded_counts,
    loaded_files,
    loaded_tables,
    make_pipeline,
    table_rows,
)
from tests.sandbox import Fault


def plain_config(url: str, api_key: str) -> dict:
    return {
        "client": {
            "base_url": url,
            "auth": {"type": "api_key", "name": "api_key", "api_key": api_key, "location": "query"},
            "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {"data_selector": "data", "params": {"limit": 20}},
        },
        "resources": [
            {
                "name": "agents",
                "endpoint": {
                    "path": "/v1/agents",
                    "incremental": {
                        "cursor_path": "updated_at",
                        "start_param": "updated_since",
                        "initial_value": "2000-01-01T00:00:00Z",
                    },
                },
            },
            {
                "name": "agent_groups",
                "endpoint": {
                    "path": "/v1/groups",
                    "params": {"agent_id": "{resources.agents.id}"},
                },
                "include_from_parent": ["id", "name"],
                "primary_key": ["id", "_agents_id"],
            },
            "brands",
        ],
    }


def test_same_rows_and_same_requests_as_plain_dlt(sandbox_factory, tmp_path):
    results: dict[str, dict[str, Any]] = {}
    for name, factory in FACTORIES.items():
        # identical twin servers: each variant sees the same data and the same mutation
        server = sandbox_factory(seed=21, size=150, shape="desk", auth="api_key_query")
        config = plain_config(server.url, server.secrets.api_key)
        config["resources"][2] = {"name": "brands", "endpoint": {"path": "/v1/brands"}}
        pipeline = make_pipeline(tmp_path, f"parity_{name}")
        pipeline.run(factory(copy.deepcopy(config)))
        first = loaded_counts(pipeline)
        first_requests = [(r.path, sorted(r.query.items())) for r in server.requests()]
        first_requests = [
            (path, [(k, "<cursor>" if k == "cursor" else v) for k, v in query])
            for path, query in first_requests
        ]
        server.mutate(updates=2, creates=1, tables=["agents"])
        pipeline.run(factory(copy.deepcopy(config)))
        results[name] = {
            "first": first,
            "second": loaded_counts(pipeline),
            "requests": sorted(first_requests),
            "agents": table_rows(pipeline, "agents", "id, name, updated_at"),
            "agent_groups": table_rows(pipeline, "agent_groups", "id, _agents_id, _agents_name"),
            "brands": table_rows(pipeline, "brands", "id, name"),
        }
    assert results["ours"] == results["plain"]
    assert results["ours"]["second"]["agents"] == 3


def incremental_config(server) -> dict:
    """Flat records read with an incremental: ours hands them to dlt as arrow batches."""
    config = desk_dict_config(server, ["customers", "ticket_comments"])
    for resource in config["resources"]:
        resource["endpoint"] |= {
            "params": {"limit": 25},
            "incremental": {
                "cursor_path": "updated_at",
                "start_param": "updated_since",
                "initial_value": "2000-01-01T00:00:00Z",
            },
        }
    return config | {"resource_defaults": {"primary_key": "id", "write_disposition": "merge"}}


def test_arrow_batches_with_an_incremental_load_what_plain_dlt_loads(sandbox_factory, tmp_path):
    results: dict[str, Any] = {}
    formats: dict[str, set[str]] = {}
    inputs: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        server = sandbox_factory(seed=23, size=120, shape="desk", auth="api_key_query")
        config = incremental_config(server)
        pipeline = make_pipeline(tmp_path, f"incremental_{name}")
        source = factory(copy.deepcopy(config))
        inputs[name] = {
            table: [
                {**i, "location": i["location"].replace(server.url, "<sandbox>")}
                for i in getattr(r, "inputs", [])  # dlt records lineage from 1.30 on
            ]
            for table, r in source.resources.items()
        }
        pipeline.run(source)
        formats[name] = arrow_tables(pipeline)
        # changes in the same second as the last cursor: the boundary rows are read again
        server.mutate(
            updates=7, creates=3, tables=["customers", "ticket_comments"], same_second=True
        )
        pipeline.run(factory(copy.deepcopy(config)))
        state: Any = pipeline.state["sources"][pipeline.default_schema.name]["resources"]
        tables = loaded_tables(pipeline)
        if name == "ours":
            # ours marks a merge resource's cursor `dedup_sort: desc` (the newest version of a
            # record read twice wins), plain dlt does not: the one column hint that differs
            for table in tables.values():
                for _, props in table["columns"]:
                    props.pop("dedup_sort", None)
        results[name] = {
            "tables": tables,
            "second": loaded_counts(pipeline),
            "last_values": {
                table: state[table]["incremental"]["updated_at"]["last_value"]
                for table in ("customers", "ticket_comments")
            },
        }
    assert formats["ours"] == {"customers", "ticket_comments"}
    assert results["ours"] == results["plain"]
    assert inputs["ours"] == inputs["plain"]  # the data location dlt records (lineage)
    assert inputs["ours"]["customers"] or not hasattr(DltResource, "inputs")


def test_a_declared_decimal_column_rounds_as_on_plain_dlt(sandbox_factory, tmp_path):
    # dlt's parquet writer refuses a value with more decimals than the column's scale, which
    # plain dlt's row-by-row inserts round: records of such a table load from jsonl instead
    fee = {"name": "fee", "data_type": "decimal", "precision": 10, "scale": 2}
    loaded: dict[str, list[tuple[Any, ...]]] = {}
    for name, factory in FACTORIES.items():
        server = sandbox_factory(seed=25, size=40, shape="desk", auth="api_key_query")
        rows = server.dataset.window("brands", 5).rows
        for position, row in enumerate(rows):
            row["fee"] = 12345678.125 if position == 2 else position + 0.5
        body = json.dumps({"data": rows, "next_cursor": None})
        server.inject("/v1/brands", [Fault(status=200, body=body)])
        config = desk_dict_config(server, ["brands"], columns=[fee])
        pipeline = make_pipeline(tmp_path, f"decimal_{name}")
        pipeline.run(factory(copy.deepcopy(config)))
        loaded[name] = table_rows(pipeline, "brands", "id, fee")
        if name == "ours":
            assert {fmt for _, fmt in loaded_files(pipeline)} == {"jsonl"}
    assert loaded["ours"] == loaded["plain"]
    assert Decimal("12345678.13") in {fee for _, fee in loaded["ours"]}


def test_schema_settings_a_pipeline_script_sets_load_as_on_plain_dlt(sandbox_factory, tmp_path):
    results: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        server = sandbox_factory(seed=41, size=120, shape="desk", auth="api_key_query")
        source = factory(desk_dict_config(server, ["customers", "agents"]))
        # default hints and a preferred type, set on the source as a pipeline script may
        source.schema.merge_hints(
            {"partition": [TSimpleRegex("re:^created")], "unique": [TSimpleRegex("email")]}
        )
        source.schema.update_preferred_types({TSimpleRegex("organization_id"): "double"})
        pipeline = make_pipeline(tmp_path, f"settings_{name}")
        pipeline.run(source)
        results[name] = (loaded_tables(pipeline), arrow_tables(pipeline))
    assert results["ours"][0] == results["plain"][0]
    assert results["ours"][1] == {"customers", "agents"}  # the settings kept them arrow
    columns = dict(results["ours"][0]["customers"]["columns"])
    assert columns["organization_id"]["data_type"] == "double"
    assert columns["created_at"]["partition"] is True
    assert columns["email"]["unique"] is True
