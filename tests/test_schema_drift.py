"""Schema drift: a new field, a field turning null and a field changing type all load.

`mutate(..., drift=True)` gives updated tickets a new `satisfaction_score`, a null `subject`,
a text `requester_id` (was an integer) and a numeric `priority` (was text, and typed text by
the catalogue); updated agents get a new `time_zone`, a null `email` and a text `active` (was
a boolean). dlt adds columns for new fields and a variant column (`<name>__v_<type>`) for a
value that cannot be coerced to the column's type.
"""

from __future__ import annotations

import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import support_api
from tests.helpers import loaded_counts, make_pipeline, table_ids, table_rows

RESOURCES = ["tickets", "agents"]


@pytest.fixture
def desk(sandbox_factory):
    return sandbox_factory(seed=31, size=80, shape="desk", auth="api_key_query")


def source(server):
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    return support_api(
        base_url=server.url, credentials=credentials, resources=RESOURCES, page_size=30
    )


def columns_of(pipeline, table: str) -> dict[str, str]:
    columns = pipeline.default_schema.get_table_columns(table)
    return {name: column.get("data_type", "") for name, column in columns.items()}


def assert_drifted_rows_loaded(pipeline, server, drifted: dict[str, tuple[int, ...]]) -> None:
    tickets = {
        row[0]: row[1:]
        for row in table_rows(
            pipeline,
            "tickets",
            "id, subject, requester_id, requester_id__v_text, satisfaction_score, priority",
        )
    }
    for row_id, (subject, requester, requester_text, score, priority) in tickets.items():
        served = server.dataset.get("tickets", row_id)
        if row_id in drifted["tickets"]:
            assert subject is None
            assert requester is None
            assert requester_text == served["requester_id"]
            assert requester_text.startswith("cust-")
            assert score == served["satisfaction_score"]
            assert priority == str(served["priority"]), "a hinted text column coerces numbers"
        else:
            assert subject == served["subject"]
            assert requester == served["requester_id"]
            assert requester_text is None
            assert score is None
    agents = {
        row[0]: row[1:]
        for row in table_rows(pipeline, "agents", "id, email, active, active__v_text, time_zone")
    }
    for row_id, (email, active, active_text, time_zone) in agents.items():
        served = server.dataset.get("agents", row_id)
        if row_id in drifted["agents"]:
            assert (email, active, active_text) == (None, None, "on_leave")
            assert time_zone == served["time_zone"]
        else:
            assert (email, active, active_text, time_zone) == (
                served["email"],
                served["active"],
                None,
                None,
            )


def test_drift_between_runs_adds_columns_and_variants_without_failing(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk))
    before = {table: columns_of(pipeline, table) for table in RESOURCES}
    assert before["tickets"]["requester_id"] == "bigint"
    assert before["agents"]["active"] == "bool"

    changes = desk.mutate(updates=4, creates=0, tables=RESOURCES, drift=True)
    pipeline.run(source(desk))

    assert loaded_counts(pipeline) == {"tickets": 4, "agents": 4}
    tickets = columns_of(pipeline, "tickets")
    assert tickets["satisfaction_score"] == "bigint"
    assert tickets["requester_id"] == "bigint", "the original column keeps its type"
    assert tickets["requester_id__v_text"] == "text"
    assert tickets["priority"] == "text"
    assert "priority__v_bigint" not in tickets
    agents = columns_of(pipeline, "agents")
    assert agents["time_zone"] == "text"
    assert agents["active"] == "bool"
    assert agents["active__v_text"] == "text"
    for table in RESOURCES:
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table))
    drifted = {table: changes[table].updated_ids for table in RESOURCES}
    assert_drifted_rows_loaded(pipeline, desk, drifted)


def test_drift_inside_one_run_loads_both_shapes(desk, tmp_path):
    changes = desk.mutate(updates=3, creates=2, tables=RESOURCES, drift=True)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source(desk))

    for table in RESOURCES:
        assert table_ids(pipeline, table) == sorted(desk.dataset.ids(table))
    assert columns_of(pipeline, "tickets")["requester_id__v_text"] == "text"
    assert columns_of(pipeline, "agents")["active__v_text"] == "text"
    drifted = {table: changes[table].updated_ids for table in RESOURCES}
    assert_drifted_rows_loaded(pipeline, desk, drifted)


def test_drifted_rows_drifting_back_merge_into_the_original_columns(desk, tmp_path):
    pipeline = make_pipeline(tmp_path)
    changes = desk.mutate(updates=2, creates=0, tables=["agents"], drift=True)["agents"]
    pipeline.run(source(desk))
    # every agent is updated again without drift: `active` is a boolean again for all of them
    count = desk.dataset.count("agents")
    desk.mutate(updates=count, creates=0, tables=["agents"])
    pipeline.run(source(desk))

    assert loaded_counts(pipeline) == {"agents": count}
    rows = table_rows(pipeline, "agents", "id, active, active__v_text, time_zone")
    assert [row[0] for row in rows] == sorted(desk.dataset.ids("agents"))
    for row_id, active, active_text, time_zone in rows:
        assert isinstance(active, bool), row_id
        assert active_text is None, "merge replaced the drifted version"
        assert (time_zone is not None) == (row_id in changes.updated_ids)
