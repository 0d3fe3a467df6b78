"""A record read twice in one run (changed while the run read it) loads its newest version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import support_api
from sources.support_api.config import normalize_config
from tests.helpers import make_pipeline, table_ids, table_rows
from tests.sandbox import SandboxServer


def merge_sql(tmp_path: Path) -> str:
    """The SQL of the last load's merge job of `tickets`."""
    jobs = (tmp_path / "pipelines").rglob("completed_jobs/tickets.*.sql")
    latest = max(jobs, key=lambda path: path.stat().st_mtime_ns)
    return latest.read_text()


def tickets_source(server: SandboxServer, **options: Any) -> Any:
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(
        base_url=server.url, credentials=credentials, resources=["tickets"], **options
    )


def test_a_ticket_read_twice_in_one_run_loads_once_in_its_newest_version(
    sandbox_factory, tmp_path, monkeypatch
):
    server = sandbox_factory(seed=8, size=1500, shape="desk")
    serve_page = server._page
    pages: list[int] = []

    def page_then_update_everything(*args: Any) -> Any:
        served = serve_page(*args)
        pages.append(1)
        if len(pages) == 1:
            # every ticket moves past the first page: its tickets are read again later
            server.mutate(updates=1500, creates=0, tables=["tickets"])
        return served

    monkeypatch.setattr(server, "_page", page_then_update_everything)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(tickets_source(server, concurrency=1))
    assert "ROW_NUMBER" in merge_sql(tmp_path)
    ids = table_ids(pipeline, "tickets")
    assert ids == sorted(server.dataset.ids("tickets"))  # once each
    # the newer of the two versions is the one kept
    loaded = dict(table_rows(pipeline, "tickets", "id, updated_at"))
    current = {
        row["id"]: pendulum.parse(row["updated_at"]) for row in server.dataset.rows("tickets")
    }
    assert loaded == current


def seed_style(**resource: Any) -> dict[str, Any]:
    return {
        "client": {"base_url": "https://api.example.com"},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "tickets",
                "endpoint": {"incremental": {"cursor_path": "updated_at", "initial_value": "0"}},
                **resource,
            }
        ],
    }


def columns_of(config: dict[str, Any]) -> Any:
    resource = normalize_config(config).resources[0]
    assert isinstance(resource, dict)
    return resource.get("columns")


def test_a_merge_on_an_incremental_cursor_keeps_the_newest_version():
    assert columns_of(seed_style()) == {"updated_at": {"dedup_sort": "desc"}}
    hinted = seed_style(columns={"updated_at": {"data_type": "timestamp"}})
    assert columns_of(hinted) == {"updated_at": {"data_type": "timestamp", "dedup_sort": "desc"}}


@pytest.mark.parametrize(
    "resource",
    [
        {"columns": {"version": {"dedup_sort": "asc"}}},  # the config's own choice
        {"write_disposition": "append"},
        {"write_disposition": {"disposition": "merge", "strategy": "scd2"}},
        {"primary_key": []},
        {"endpoint": {"incremental": {"cursor_path": "meta.updated", "initial_value": "0"}}},
        {"endpoint": {"path": "tickets"}},  # no cursor
    ],
)
def test_no_dedup_sort_where_the_config_decides_or_there_is_nothing_to_sort_by(resource):
    columns = columns_of(seed_style(**resource)) or {}
    assert [name for name, hints in columns.items() if hints.get("dedup_sort") == "desc"] == []
