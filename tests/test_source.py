"""End-to-end tests of the `support_api` source on the loopback sandbox."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import HTTPStatusError, http_policy, support_api, support_api_from_config
from sources.support_api import resources as support_resources
from sources.support_api.settings import CATALOGUE
from tests.helpers import (
    arrow_tables,
    desk_dict_config,
    extracted_files,
    find_cause,
    loaded_counts,
    loaded_file_formats,
    make_pipeline,
    table_ids,
    table_rows,
)
from tests.sandbox import Fault

TABLES = [spec.name for spec in CATALOGUE]


@pytest.fixture
def desk(sandbox_factory):
    """A desk-shaped sandbox with the API key in the query, and the source pointed at it."""
    return sandbox_factory(seed=11, size=250, shape="desk", auth="api_key_query")


def desk_source(server, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(base_url=server.url, credentials=credentials, **kwargs)


def test_every_resource_loads_exact_ids_without_duplicates_after_two_runs(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk))
    first = loaded_counts(pipeline)
    pipeline.run(desk_source(desk))

    for table in TABLES:
        assert first[table] == desk.dataset.count(table)
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table)), table
    assert loaded_counts(pipeline) == {}


def test_credentials_and_base_url_resolve_from_env(desk, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCES__SUPPORT_API__BASE_URL", desk.url)
    monkeypatch.setenv("SOURCES__SUPPORT_API__CREDENTIALS__API_KEY", desk.secrets.api_key)
    monkeypatch.setenv("SOURCES__SUPPORT_API__CREDENTIALS__NAME", "api_key")
    monkeypatch.setenv("SOURCES__SUPPORT_API__CREDENTIALS__LOCATION", "query")
    monkeypatch.setenv("SOURCES__SUPPORT_API__RESOURCES", '["brands", "groups"]')
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api())
    assert set(loaded_counts(pipeline)) == {"brands", "groups"}
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))


def test_after_mutation_only_changed_rows_load_and_unchanged_resources_cost_one_request(
    desk, tmp_path
):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk))
    changes = desk.mutate(updates=6, creates=4, tables=["tickets", "customers"])
    desk.reset_log()

    pipeline.run(desk_source(desk))

    counts = loaded_counts(pipeline)
    assert counts == {
        "tickets": len(changes["tickets"].updated_ids) + len(changes["tickets"].created_ids),
        "customers": len(changes["customers"].updated_ids) + len(changes["customers"].created_ids),
    }
    for table in TABLES:
        if table not in counts:
            assert desk.count(path=f"/v1/{table}") == 1, table
    for table in ("tickets", "customers"):
        loaded = dict(table_rows(pipeline, table, "id, updated_at"))
        expected = {row["id"]: row["updated_at"] for row in desk.dataset.rows(table)}
        assert len(loaded) == len(expected)
        assert {k: v.strftime("%Y-%m-%dT%H:%M:%SZ") for k, v in loaded.items()} == expected
        assert table_ids(pipeline, table) == sorted(expected)


def test_last_cursor_is_sent_to_the_server_minus_the_lookback(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["agents"]))
    last = max(row["updated_at"] for row in desk.dataset.rows("agents"))
    desk.reset_log()

    pipeline.run(desk_source(desk, resources=["agents"], lookback_seconds=3600))

    (request,) = desk.requests(path="/v1/agents")
    sent = pendulum_parse(request.query["updated_since"])
    assert sent == pendulum_parse(last).subtract(hours=1)
    assert loaded_counts(pipeline).get("agents", 0) > 0
    assert table_ids(pipeline, "agents") == sorted(desk.dataset.ids("agents"))


def pendulum_parse(value: str):
    import pendulum  # noqa: PLC0415 - only these tests compare instants

    return pendulum.parse(value)


def test_end_date_window_sends_both_bounds_and_keeps_no_state(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    start, end = "2024-01-01T00:10:00Z", "2024-01-01T01:00:00Z"
    pipeline.run(desk_source(desk, resources=["tickets"], start_date=start, end_date=end))

    expected = [r["id"] for r in desk.dataset.rows("tickets") if start <= r["updated_at"] < end]
    assert expected
    assert table_ids(pipeline, "tickets") == sorted(expected)
    query = desk.requests(path="/v1/tickets")[0].query
    assert query["updated_since"] == start
    assert query["updated_before"] == end


def test_401_is_not_retried_and_names_resource_and_redacted_url(desk, tmp_path):
    desk.inject("/v1/groups", [Fault(status=401)])
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(desk_source(desk, resources=["groups"]))
    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 401
    assert "`groups`" in str(error)
    assert "api_key=%2A%2A%2A" in str(error) or "api_key=***" in str(error)
    assert desk.secrets.api_key not in str(failure.value)
    assert desk.count(path="/v1/groups") == 1


@pytest.mark.parametrize("status", [403, 404])
def test_client_errors_fail_at_once(desk, tmp_path, status):
    desk.inject("/v1/brands", [Fault(status=status)])
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(desk_source(desk, resources=["brands"]))
    error = find_cause(failure.value, HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == status
    assert desk.count(path="/v1/brands") == 1
    state = pipeline.state.get("sources", {})
    assert "brands" not in str(state)


def test_resources_extract_in_parallel_threads_by_default(desk, tmp_path, monkeypatch):
    threads: set[str] = set()
    original_send = http_policy.PacedSession.send

    def recording_send(self, request, **kwargs):
        threads.add(threading.current_thread().name)
        return original_send(self, request, **kwargs)

    monkeypatch.setattr(http_policy.PacedSession, "send", recording_send)
    pipeline = make_pipeline(tmp_path)
    # one walk per resource: requests are then sent from the thread extracting the resource
    pipeline.run(desk_source(desk, concurrency=1))
    for table in TABLES:
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table))
    assert any("extract" in name for name in threads), threads
    assert threading.main_thread().name not in threads

    threads.clear()
    pipeline.run(desk_source(desk, parallelized=False, concurrency=1))
    assert threads == {threading.main_thread().name}


def test_endpoint_overrides_from_env_change_path_selector_and_paginator(
    sandbox_factory, tmp_path, monkeypatch
):
    server = sandbox_factory(seed=3, size=120, shape="seed001", auth="api_key_query")
    monkeypatch.setenv(
        "SOURCES__SUPPORT_API__ENDPOINTS",
        '{"tickets": {"path": "/v1/tickets", "data_selector": "tickets",'
        ' "paginator": {"type": "offset", "limit": 25}}}',
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(server, resources=["tickets"]))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    offsets = [int(r.query["offset"]) for r in server.requests(path="/v1/tickets")]
    assert sorted(offsets)[:5] == list(range(0, 125, 25))
    assert len(offsets) == len(set(offsets))


def test_schema_hints_type_timestamps_and_keep_nested_values_as_json(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["tickets", "organizations"]))
    schema = pipeline.default_schema
    tickets = schema.get_table_columns("tickets")
    assert tickets["updated_at"]["data_type"] == "timestamp"
    assert tickets["updated_at"]["nullable"] is False
    assert tickets["created_at"]["data_type"] == "timestamp"
    assert tickets["tags"]["data_type"] == "json"
    assert tickets["custom_fields"]["data_type"] == "json"
    assert tickets["id"]["primary_key"] is True
    assert schema.get_table("tickets")["write_disposition"] == "merge"
    assert "tickets__tags" not in schema.tables
    organizations = schema.get_table_columns("organizations")
    assert organizations["organization_fields"]["data_type"] == "json"


def test_rows_updated_in_the_same_second_as_the_last_loaded_row_are_neither_lost_nor_repeated(
    desk, tmp_path
):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["tickets"]))
    first = desk.mutate(updates=0, creates=1, tables=["tickets"])["tickets"]
    pipeline.run(desk_source(desk, resources=["tickets"]))
    assert loaded_counts(pipeline) == {"tickets": 1}
    tie = desk.mutate(updates=2, creates=2, tables=["tickets"], same_second=True)["tickets"]
    last_second = desk.dataset.get("tickets", first.created_ids[0])["updated_at"]
    for row_id in (*tie.updated_ids, *tie.created_ids):
        assert desk.dataset.get("tickets", row_id)["updated_at"] == last_second

    desk.reset_log()
    pipeline.run(desk_source(desk, resources=["tickets"]))

    assert loaded_counts(pipeline) == {"tickets": 4}
    assert desk.requests(path="/v1/tickets")[0].query["updated_since"] == last_second
    assert table_ids(pipeline, "tickets") == sorted(desk.dataset.ids("tickets"))
    loaded = dict(table_rows(pipeline, "tickets", "id, updated_at"))
    assert all(
        loaded[r["id"]].strftime("%Y-%m-%dT%H:%M:%SZ") == r["updated_at"]
        for r in desk.dataset.rows("tickets")
    )


def test_bulk_file_format_is_picked_for_duckdb_unless_disabled(desk, tmp_path):
    # catalogue resources arrive as arrow tables, written and loaded as parquet
    catalogue = make_pipeline(tmp_path, "catalogue")
    catalogue.run(desk_source(desk, resources=["brands"]))
    assert loaded_file_formats(catalogue) == {"parquet"}
    assert arrow_tables(catalogue) == {"brands"}

    # a seed-style config: flat records become arrow tables too
    config: Any = desk_dict_config(desk, ["brands"], primary_key="id", write_disposition="merge")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(config))
    assert loaded_file_formats(pipeline) == {"parquet"}
    assert arrow_tables(pipeline) == {"brands"}

    # records arrow would load differently (organizations hold a nested list) stay records,
    # normalized by dlt, and load from parquet too rather than from row-by-row inserts
    nested = desk_dict_config(desk, ["organizations"], primary_key="id", write_disposition="merge")
    nested_pipeline = make_pipeline(tmp_path, "nested_pipeline")
    nested_pipeline.run(support_api_from_config(nested))
    assert extracted_files(nested_pipeline) == {("organizations", "typed-jsonl")}
    assert loaded_file_formats(nested_pipeline) == {"parquet"}
    assert table_ids(nested_pipeline, "organizations") == sorted(desk.dataset.ids("organizations"))

    # hints arrow batches would not honour as dlt does keep records
    variants: list[tuple[dict[str, Any], str, bool]] = [
        ({"columns": [{"name": "name", "data_type": "text"}]}, "brands", True),
        ({"schema_contract": {"columns": "evolve"}}, "brands", False),
        ({"table_name": "brand_rows"}, "brand_rows", False),
    ]
    for hints, table, arrow in variants:
        variant: Any = copy.deepcopy(config)
        variant["resources"][0] |= hints
        variant_pipeline = make_pipeline(tmp_path, f"variant_{arrow}_{table}")
        variant_pipeline.run(support_api_from_config(variant))
        assert arrow_tables(variant_pipeline) == ({table} if arrow else set()), hints
        assert loaded_file_formats(variant_pipeline) == {"parquet"}, hints
        assert table_ids(variant_pipeline, table) == sorted(desk.dataset.ids("brands"))

    other = make_pipeline(tmp_path, "insert_values_pipeline")
    other.run(support_api_from_config(config, file_format=None))
    assert loaded_file_formats(other) == {"insert_values"}
    assert table_ids(other, "brands") == table_ids(pipeline, "brands")
    assert table_ids(catalogue, "brands") == table_ids(pipeline, "brands")


def test_without_pyarrow_records_stay_records_and_load_from_jsonl(desk, tmp_path, monkeypatch):
    monkeypatch.setattr(support_resources, "_has_pyarrow", lambda: False)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(desk, resources=["brands", "organizations"]))
    assert arrow_tables(pipeline) == set()
    assert loaded_file_formats(pipeline) == {"jsonl"}
    for table in ("brands", "organizations"):
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table))


@pytest.mark.parametrize("grant", ["refresh_token", "client_credentials"])
def test_oauth2_credentials_resolve_from_secrets(
    sandbox_factory, tmp_path, monkeypatch, insecure_loopback_oauth, grant
):
    server = sandbox_factory(seed=13, size=40, shape="desk", auth="oauth2")
    secrets = server.secrets
    prefix = "SOURCES__SUPPORT_API__CREDENTIALS__"
    monkeypatch.setenv("SOURCES__SUPPORT_API__BASE_URL", server.url)
    monkeypatch.setenv(f"{prefix}CLIENT_ID", secrets.client_id)
    monkeypatch.setenv(f"{prefix}CLIENT_SECRET", secrets.client_secret)
    monkeypatch.setenv(f"{prefix}TOKEN_URL", f"{server.url}/oauth/token")
    if grant == "refresh_token":
        monkeypatch.setenv(f"{prefix}REFRESH_TOKEN", secrets.refresh_token)
    pipeline = make_pipeline(tmp_path)
    source = support_api(resources=["agents", "groups"])
    pipeline.run(source)
    assert table_ids(pipeline, "agents") == sorted(server.dataset.ids("agents"))
    assert server.token_requests[grant] == 1
    for value in (secrets.client_secret, secrets.refresh_token):
        assert value not in str(pipeline.state)
        assert value not in str(pipeline.last_trace)


def test_dlt_init_placeholders_do_not_shadow_the_configured_api_key(desk, tmp_path, monkeypatch):
    prefix = "SOURCES__SUPPORT_API__CREDENTIALS__"
    for key in ("CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN", "TOKEN_URL"):
        monkeypatch.setenv(f"{prefix}{key}", "<configure me>")  # what dlt init writes
    monkeypatch.setenv(f"{prefix}API_KEY", desk.secrets.api_key)
    monkeypatch.setenv(f"{prefix}NAME", "api_key")
    monkeypatch.setenv(f"{prefix}LOCATION", "query")
    monkeypatch.setenv("SOURCES__SUPPORT_API__BASE_URL", desk.url)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api(resources=["brands"]))
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))


def test_only_placeholders_name_the_keys_still_to_configure(monkeypatch):
    prefix = "SOURCES__SUPPORT_API__CREDENTIALS__"
    for key in ("CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN", "TOKEN_URL"):
        monkeypatch.setenv(f"{prefix}{key}", "<configure me>")
    monkeypatch.setenv("SOURCES__SUPPORT_API__BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigFieldMissingException) as error:
        support_api()
    assert "client_secret" in str(error.value)
