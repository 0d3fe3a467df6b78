"""Records the API marks deleted: kept with their marker (default) or hard-deleted on request.

The sandbox marks a deleted ticket with `status = "deleted"` and any other deleted record with
`deleted: true`, and serves it again with a new `updated_at`, so an incremental run sees it.
"""

from __future__ import annotations

import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import ConfigError, support_api
from sources.support_api.settings import DELETED_COLUMN
from tests.helpers import find_cause, loaded_counts, make_pipeline, table_ids, table_rows
from tests.sandbox.data import is_deleted


@pytest.fixture
def desk(sandbox_factory):
    return sandbox_factory(seed=21, size=60, shape="desk", auth="api_key_query")


def source(server, **kwargs):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(base_url=server.url, credentials=credentials, page_size=25, **kwargs)


def live_ids(server, table: str) -> list[int]:
    return sorted(r["id"] for r in server.dataset.rows(table) if not is_deleted(table, r))


def deleted_ids(server, table: str) -> list[int]:
    return sorted(r["id"] for r in server.dataset.rows(table) if is_deleted(table, r))


def test_by_default_deleted_records_are_kept_with_their_marker(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["tickets", "customers"]))
    changes = desk.mutate(updates=2, creates=1, deletes=3, tables=["tickets", "customers"])
    pipeline.run(source(desk, resources=["tickets", "customers"]))

    assert loaded_counts(pipeline) == {"tickets": 6, "customers": 6}
    for table in ("tickets", "customers"):
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table))
        assert len(changes[table].deleted_ids) == 3
    statuses = dict(table_rows(pipeline, "tickets", "id, status"))
    assert {statuses[i] for i in changes["tickets"].deleted_ids} == {"deleted"}
    flags = dict(table_rows(pipeline, "customers", "id, deleted"))
    assert [i for i, flag in flags.items() if flag] == list(changes["customers"].deleted_ids)
    assert DELETED_COLUMN not in pipeline.default_schema.get_table_columns("tickets")


def test_hard_delete_on_a_status_value_removes_deleted_tickets(desk, tmp_path):
    endpoints = {"tickets": {"on_delete": "hard_delete"}}
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["tickets"], endpoints=endpoints))
    assert table_ids(pipeline, "tickets") == sorted(desk.dataset.ids("tickets"))

    changes = desk.mutate(updates=3, creates=2, deletes=4, tables=["tickets"])["tickets"]
    pipeline.run(source(desk, resources=["tickets"], endpoints=endpoints))

    assert loaded_counts(pipeline) == {"tickets": 9}
    assert table_ids(pipeline, "tickets") == live_ids(desk, "tickets")
    assert not set(changes.deleted_ids) & set(table_ids(pipeline, "tickets"))
    assert set(changes.created_ids) <= set(table_ids(pipeline, "tickets"))
    loaded = dict(table_rows(pipeline, "tickets", "id, status"))
    for row_id in changes.updated_ids:
        assert loaded[row_id] == desk.dataset.get("tickets", row_id)["status"]
    column = pipeline.default_schema.get_table_columns("tickets")[DELETED_COLUMN]
    assert column["hard_delete"] is True
    assert column["data_type"] == "bool"
    # the incremental cursor moved past the deletions: the next run asks for nothing old
    desk.reset_log()
    pipeline.run(source(desk, resources=["tickets"], endpoints=endpoints))
    assert loaded_counts(pipeline) == {}
    assert desk.count(path="/v1/tickets") == 1


def test_hard_delete_on_a_flag_configured_from_env(desk, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "SOURCES__SUPPORT_API__ENDPOINTS",
        '{"customers": {"on_delete": "hard_delete"}, "agents": {"on_delete": "hard_delete"}}',
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["customers", "agents", "brands"]))
    changes = desk.mutate(updates=1, creates=1, deletes=2, tables=["customers", "agents", "brands"])
    pipeline.run(source(desk, resources=["customers", "agents", "brands"]))

    for table in ("customers", "agents"):
        assert table_ids(pipeline, table) == live_ids(desk, table), table
        assert len(deleted_ids(desk, table)) == 2
        column = pipeline.default_schema.get_table_columns(table)["deleted"]
        assert column["hard_delete"] is True
    # brands kept the default: its deleted records stay, flagged
    assert table_ids(pipeline, "brands") == sorted(desk.dataset.ids("brands"))
    flags = dict(table_rows(pipeline, "brands", "id, deleted"))
    assert sorted(i for i, flag in flags.items() if flag) == list(changes["brands"].deleted_ids)


def test_records_deleted_before_the_first_run_are_never_inserted(desk, tmp_path):
    desk.mutate(updates=0, creates=0, deletes=5, tables=["tickets", "customers"])
    endpoints = {"tickets": {"on_delete": "hard_delete"}, "customers": {"on_delete": "hard_delete"}}
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["tickets", "customers"], endpoints=endpoints))
    for table in ("tickets", "customers"):
        assert len(deleted_ids(desk, table)) == 5
        assert table_ids(pipeline, table) == live_ids(desk, table)


def test_a_custom_status_field_and_value(desk, tmp_path):
    # agents whose role says they left count as deleted
    endpoints = {
        "agents": {
            "deleted_field": "role",
            "deleted_value": "light_agent",
            "on_delete": "hard_delete",
        }
    }
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk, resources=["agents"], endpoints=endpoints))
    expected = sorted(r["id"] for r in desk.dataset.rows("agents") if r["role"] != "light_agent")
    assert 0 < len(expected) < desk.dataset.count("agents")
    assert table_ids(pipeline, "agents") == expected


@pytest.mark.parametrize(
    ("override", "key_path", "words"),
    [
        ({"on_delete": "soft"}, "endpoints.tickets.on_delete", "hard_delete, keep_flagged"),
        ({"on_delete": True}, "endpoints.tickets.on_delete", "non-empty string"),
        (
            {"on_delete": "hard_delete", "deleted_field": ""},
            "endpoints.tickets.on_delete",
            "needs `deleted_field`",
        ),
        (
            {"on_delete": "hard_delete", "write_disposition": "append"},
            "endpoints.tickets.on_delete",
            "needs write_disposition `merge`",
        ),
        (
            {"on_delete": "hard_delete", "deleted_field": "updated_at"},
            "endpoints.tickets.deleted_field",
            "not a delete marker",
        ),
        ({"deleted_value": 3}, "endpoints.tickets.deleted_value", "non-empty string"),
    ],
)
def test_bad_delete_settings_name_the_key(override, key_path, words):
    credentials = APIKeyAuth(name="api_key", api_key="sbxkey-0123456789abcdef", location="query")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - dlt may wrap the source's error
        support_api(
            base_url="http://127.0.0.1:9", credentials=credentials, endpoints={"tickets": override}
        )
    error = find_cause(raised.value, ConfigError)
    assert isinstance(error, ConfigError), raised.value
    assert error.key_path == key_path
    assert words in str(error)
    assert "sbxkey-0123456789abcdef" not in str(raised.value)
