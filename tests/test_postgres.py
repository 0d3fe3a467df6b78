"""The end-to-end incremental load on a second real destination: PostgreSQL on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dlt
import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import support_api
from tests.helpers import loaded_counts, table_ids, table_rows
from tests.postgres import PostgresServer
from tests.sandbox import TABLES

pytestmark = pytest.mark.slow


@pytest.fixture
def desk(sandbox_factory):
    return sandbox_factory(seed=31, size=150, shape="desk", auth="api_key_query")


@pytest.fixture
def pipeline(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[dlt.Pipeline]:
    """A pipeline into dataset `support_desk` of the session's server, dropped afterwards."""
    pipeline = dlt.pipeline(
        pipeline_name="support_api",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.postgres(postgres_server.credentials),
        dataset_name="support_desk",
    )
    yield pipeline
    with pipeline.sql_client() as client:
        client.drop_dataset()


def desk_source(server, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(base_url=server.url, credentials=credentials, **kwargs)


def test_incremental_runs_load_exactly_the_changed_rows_into_postgres(desk, pipeline):
    pipeline.run(desk_source(desk))
    for table in TABLES:
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table)), table

    changes = desk.mutate(updates=6, creates=4, tables=["tickets", "customers"])
    desk.reset_log()
    pipeline.run(desk_source(desk))

    assert loaded_counts(pipeline) == {
        table: len(change.updated_ids) + len(change.created_ids)
        for table, change in changes.items()
    }
    for table in TABLES:
        if table not in changes:
            assert desk.count(path=f"/v1/{table}") == 1, table
    for table in ("tickets", "customers"):
        loaded = dict(table_rows(pipeline, table, "id, updated_at"))
        expected = {row["id"]: row["updated_at"] for row in desk.dataset.rows(table)}
        assert table_ids(pipeline, table) == sorted(expected)
        assert {k: v.strftime("%Y-%m-%dT%H:%M:%SZ") for k, v in loaded.items()} == expected

    pipeline.run(desk_source(desk))
    assert loaded_counts(pipeline) == {}


def test_tables_are_named_after_the_resources_in_the_support_desk_schema(desk, pipeline):
    pipeline.run(desk_source(desk, resources=["tickets", "agents"]))
    query = (
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'support_desk' ORDER BY table_name"
    )
    with pipeline.sql_client() as client:
        names = [row[0] for row in client.execute_sql(query) or []]
    assert names == [
        "_dlt_loads",
        "_dlt_pipeline_state",
        "_dlt_version",
        "agents",
        "tickets",
    ]
    columns = pipeline.default_schema.get_table_columns("tickets")
    assert columns["updated_at"]["data_type"] == "timestamp"
    assert columns["tags"]["data_type"] == "json"
