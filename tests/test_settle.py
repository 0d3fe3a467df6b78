"""Nothing is lost when the API's data changes while a sync reads it (the settle margin).

The sandbox stamps a change's `updated_at` when it starts and shows the change only when it
commits (`mutate(pending=True)`, then `commit_pending`), as a database-backed API does. The
source's clock is the sandbox's: `settle.utc_now` reads the newest stamp the sandbox handed
out (`Dataset.now`, which a test moves on with `Dataset.advance`), so the runs are
deterministic and take no waiting.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import pendulum
import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import ConfigError, settle, support_api, support_api_from_config
from sources.support_api.config import normalize_config
from sources.support_api.resources import StableStateIncremental
from sources.support_api.settings import DEFAULT_SETTLE_SECONDS
from tests.helpers import make_pipeline, table_rows
from tests.sandbox import SandboxServer
from tests.test_plain_dlt_parity import plain_config

DESK_TABLES = ("tickets", "ticket_comments", "organizations")
KINDS: dict[str, dict[str, Any]] = {
    "cursor": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
    "nested_cursor": {
        "type": "cursor",
        "cursor_path": "paging.next.after",
        "cursor_param": "after",
    },
    "offset": {"type": "offset", "limit": 25},
    "page_number": {"type": "page_number", "page_size": 25},
    "json_link": {"type": "json_link", "next_url_path": "next"},
    "header_link": {"type": "header_link"},
}
"""Every paginator kind of the sandbox's `kinds` shape."""

SERVER_BOUND = {"cursor", "nested_cursor", "page_number", "json_link"}
"""Kinds whose dict sets `end_param`: the bound goes to the server; the others keep it on
the client."""


class SandboxTime:
    """The source's clock: the sandbox's time, its newest stamp or later."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.server.dataset.now, UTC)

    def wait(self, seconds: int) -> None:
        """Lets `seconds` pass with no change stamped."""
        self.server.dataset.advance(seconds)


@pytest.fixture
def desk(sandbox_factory, monkeypatch) -> tuple[SandboxServer, SandboxTime]:
    # a little latency: pages arrive slower than dlt takes them, so walks split into windows
    server = sandbox_factory(seed=29, size=300, shape="desk", latency_ms=4)
    clock = SandboxTime(server)
    monkeypatch.setattr(settle, "utc_now", clock)
    return server, clock


def desk_source(server: SandboxServer, **options: Any) -> Any:
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    options = {"page_size": 20, "concurrency": 4, "resources": list(DESK_TABLES), **options}
    return support_api(base_url=server.url, credentials=credentials, **options)


def as_text(value: Any) -> str:
    if isinstance(value, datetime):
        return pendulum.instance(value).in_tz("UTC").format("YYYY-MM-DDTHH:mm:ss[Z]")
    return str(value)


def assert_exact(pipeline: Any, server: SandboxServer, table: str, source: str = "") -> None:
    """Every row of the API is loaded once, in its newest version."""
    loaded = table_rows(pipeline, source or table, "id, updated_at")
    expected = {row["id"]: row["updated_at"] for row in server.dataset.rows(table)}
    assert len(loaded) == len({row_id for row_id, _ in loaded}), f"{source or table}: twice"
    got = {row_id: as_text(updated) for row_id, updated in loaded}
    missing = sorted(set(expected) - set(got))
    stale = sorted(k for k in expected if k in got and got[k] != expected[k])
    assert not missing, f"{source or table}: {len(missing)} rows never loaded: {missing[:10]}"
    assert not stale, f"{source or table}: {len(stale)} rows stale: {stale[:10]}"


def test_a_change_shown_after_a_newer_one_was_read_is_loaded_by_the_next_run(desk, tmp_path):
    server, clock = desk
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(server))
    # a transaction stamps tickets and comments, and holds them invisible...
    held = server.mutate(updates=5, creates=2, tables=list(DESK_TABLES), pending=True)
    # ...while a later one commits at once
    server.mutate(updates=5, creates=2, tables=list(DESK_TABLES))
    pipeline.run(desk_source(server))
    server.commit_pending()  # the first one shows its changes now, a moment later
    clock.wait(DEFAULT_SETTLE_SECONDS + 1)
    pipeline.run(desk_source(server))

    for table in DESK_TABLES:
        assert held[table].created_ids[0] in {r[0] for r in table_rows(pipeline, table)}
        assert_exact(pipeline, server, table)


class StreamingChanges:
    """Changes the data as the sandbox serves pages: every few data requests, a batch of
    changes is stamped and held invisible, a batch is committed at once, and the batch held
    since two batches ago is shown (a commit delay of a few seconds of sandbox time)."""

    def __init__(self, server: SandboxServer, tables: list[str], every: int = 3) -> None:
        self.server = server
        self.tables = tables
        self.every = every
        self.requests = 0
        self.held: deque[int] = deque()
        self.lock = threading.Lock()

    def __call__(self, route: Any) -> None:
        del route
        with self.lock:
            self.requests += 1
            if self.requests % self.every:
                return
            if len(self.held) >= 2:
                self.server.commit_pending(self.held.popleft())
            changes = self.server.mutate(updates=4, creates=1, tables=self.tables, pending=True)
            self.held.append(sum(len(c.updated_ids) + len(c.created_ids) for c in changes.values()))
            self.server.mutate(updates=3, creates=1, tables=self.tables)

    def stop(self) -> None:
        with self.lock:
            self.server.before_data_request = None
            self.server.commit_pending()
            self.held.clear()


def test_repeated_runs_while_changes_stream_in_then_a_quiet_run_load_every_row_newest(
    desk, tmp_path
):
    server, clock = desk
    streaming = StreamingChanges(server, list(DESK_TABLES))
    server.before_data_request = streaming
    pipeline = make_pipeline(tmp_path)
    for _ in range(3):
        pipeline.run(desk_source(server))
    assert streaming.requests >= 30
    walks = [r for r in server.requests(path="/v1/tickets") if "updated_since" in r.query]
    assert len(walks) > 3, "the runs were not read in concurrent windows"
    streaming.stop()
    clock.wait(DEFAULT_SETTLE_SECONDS + 1)
    pipeline.run(desk_source(server))

    for table in DESK_TABLES:
        assert_exact(pipeline, server, table)
    # and the state never holds a cursor past the bound of the run that wrote it
    state = pipeline.state["sources"]["support_api"]["resources"]
    for table in DESK_TABLES:
        last = state[table]["incremental"]["updated_at"]["last_value"]
        assert pendulum.parse(last) < clock() - pendulum.duration(seconds=DEFAULT_SETTLE_SECONDS)


def kinds_config(server: SandboxServer, settle_seconds: int | None = None) -> dict[str, Any]:
    resources = []
    for kind, paginator in KINDS.items():
        incremental: dict[str, Any] = {
            "cursor_path": "updated_at",
            "initial_value": "2000-01-01T00:00:00Z",
            "start_param": "updated_since",
        }
        if kind in SERVER_BOUND:
            incremental["end_param"] = "updated_before"
        if settle_seconds is not None:
            incremental["settle_seconds"] = settle_seconds
        endpoint: dict[str, Any] = {
            "path": f"/kinds/{kind}/tickets",
            "data_selector": "$" if kind == "header_link" else "data",
            "paginator": paginator,
            "incremental": incremental,
        }
        if kind in ("cursor", "nested_cursor", "json_link", "header_link"):
            endpoint["params"] = {"limit": 25}
        resources.append({"name": f"tickets_{kind}", "endpoint": endpoint})
    return {
        "client": {"base_url": server.url},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": resources,
    }


@pytest.mark.parametrize(
    ("settle_seconds", "file_format"),
    [
        (None, "auto"),  # the package's generators, arrow batches
        (30, "auto"),
        # records: the package's generator where there is an `end_param`, else dlt's
        # (the bound then kept in the incremental step)
        (None, None),
    ],
)
def test_every_paginator_kind_loads_changes_shown_late(
    sandbox_factory, tmp_path, monkeypatch, settle_seconds, file_format
):
    server = sandbox_factory(seed=31, size=120, shape="kinds")
    clock = SandboxTime(server)
    monkeypatch.setattr(settle, "utc_now", clock)
    pipeline = make_pipeline(tmp_path)
    config = kinds_config(server, settle_seconds)
    for _ in range(3):
        server.mutate(updates=6, creates=2, tables=["tickets"], pending=True)
        server.mutate(updates=6, creates=2, tables=["tickets"])
        pipeline.run(support_api_from_config(config, file_format=file_format))
        server.commit_pending()
    clock.wait((settle_seconds or DEFAULT_SETTLE_SECONDS) + 1)
    pipeline.run(support_api_from_config(config, file_format=file_format))

    for kind in KINDS:
        assert_exact(pipeline, server, "tickets", f"tickets_{kind}")
    for kind in KINDS:
        queries = [r.query for r in server.requests(path=f"/kinds/{kind}/tickets")]
        first_pages = [q for q in queries if "updated_since" in q]
        assert first_pages
        # with an `end_param` the bound goes to the server on every run's first request
        assert all(("updated_before" in q) == (kind in SERVER_BOUND) for q in first_pages), kind


def test_a_run_with_nothing_new_sends_one_request_per_resource_and_loads_nothing(desk, tmp_path):
    server, clock = desk
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(server))
    server.mutate(updates=3, creates=1, tables=list(DESK_TABLES))
    clock.wait(DEFAULT_SETTLE_SECONDS + 1)
    pipeline.run(desk_source(server))
    state = pipeline.state["sources"]["support_api"]["resources"]
    server.reset_log()
    clock.wait(3600)

    info = pipeline.run(desk_source(server))

    assert not info.loads_ids  # no data, and the state did not change either
    assert pipeline.state["sources"]["support_api"]["resources"] == state
    for table in DESK_TABLES:
        (request,) = server.requests(path=f"/v1/{table}")
        bound = datetime.fromtimestamp(server.dataset.now - DEFAULT_SETTLE_SECONDS, UTC)
        assert request.query["updated_before"] == bound.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_rows_inside_the_margin_wait_for_the_next_run_and_the_cursor_stays_behind(desk, tmp_path):
    server, clock = desk
    pipeline = make_pipeline(tmp_path)
    clock.wait(601)
    pipeline.run(desk_source(server, settle_seconds=600))
    before = {t: len(table_rows(pipeline, t)) for t in DESK_TABLES}
    assert before == {t: server.dataset.count(t) for t in DESK_TABLES}
    changes = server.mutate(updates=0, creates=3, tables=list(DESK_TABLES))
    clock.wait(300)  # the new rows are 300 s old: inside a 600 s margin
    pipeline.run(desk_source(server, settle_seconds=600))
    assert {t: len(table_rows(pipeline, t)) for t in DESK_TABLES} == before
    # a resource with its own margin loads them
    pipeline.run(
        desk_source(server, settle_seconds=600, endpoints={"tickets": {"settle_seconds": 0}})
    )
    assert len(table_rows(pipeline, "tickets")) == before["tickets"] + 3
    assert len(table_rows(pipeline, "organizations")) == before["organizations"]
    clock.wait(301)
    pipeline.run(desk_source(server, settle_seconds=600))
    for table in DESK_TABLES:
        assert len(changes[table].created_ids) == 3
        assert_exact(pipeline, server, table)


def test_a_parent_and_its_children_built_by_dlt_keep_the_margin_in_the_incremental_step(
    sandbox_factory, tmp_path, monkeypatch
):
    server = sandbox_factory(seed=21, size=150, shape="desk", auth="api_key_query")
    clock = SandboxTime(server)
    monkeypatch.setattr(settle, "utc_now", clock)
    config = plain_config(server.url, server.secrets.api_key)
    config["resources"][2] = {"name": "brands", "endpoint": {"path": "/v1/brands"}}
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(copy.deepcopy(config)))
    held = server.mutate(updates=0, creates=2, tables=["agents"], pending=True)["agents"]
    shown = server.mutate(updates=0, creates=2, tables=["agents"])["agents"]
    pipeline.run(support_api_from_config(copy.deepcopy(config)))
    loaded = {row[0] for row in table_rows(pipeline, "agents")}
    # the new agents are inside the margin: neither loaded nor their groups read
    assert not loaded & {*held.created_ids, *shown.created_ids}
    agents_read = {r.query.get("agent_id") for r in server.requests(path="/v1/groups")}
    assert not agents_read & {str(i) for i in shown.created_ids}
    server.commit_pending()
    clock.wait(DEFAULT_SETTLE_SECONDS + 1)
    pipeline.run(support_api_from_config(copy.deepcopy(config)))
    assert_exact(pipeline, server, "agents")


def test_a_cursor_already_past_the_bound_sends_no_inverted_range_and_does_not_move(
    desk, tmp_path, caplog
):
    server, clock = desk
    pipeline = make_pipeline(tmp_path)
    pipeline.run(desk_source(server, settle_seconds=0))
    server.mutate(updates=2, creates=1, tables=list(DESK_TABLES))
    # state from a run without a margin: the cursors are at the newest stamps
    pipeline.run(desk_source(server, settle_seconds=0))
    state = pipeline.state["sources"]["support_api"]["resources"]
    server.mutate(updates=2, creates=1, tables=list(DESK_TABLES))
    server.reset_log()
    info = pipeline.run(desk_source(server, settle_seconds=600))
    assert not info.loads_ids
    assert pipeline.state["sources"]["support_api"]["resources"] == state
    for table in DESK_TABLES:
        (request,) = server.requests(path=f"/v1/{table}")
        assert "updated_before" not in request.query
    assert "not before the settle bound" in caplog.text
    clock.wait(601)
    pipeline.run(desk_source(server, settle_seconds=600))
    for table in DESK_TABLES:
        assert_exact(pipeline, server, table)


def test_a_backfill_window_is_read_as_before(desk, tmp_path):
    server, _ = desk
    pipeline = make_pipeline(tmp_path)
    start, end = "2024-01-01T00:10:00Z", "2024-01-01T01:00:00Z"
    pipeline.run(desk_source(server, start_date=start, end_date=end))
    query = server.requests(path="/v1/tickets")[0].query
    assert (query["updated_since"], query["updated_before"]) == (start, end)
    assert not pipeline.state.get("sources")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"settle_seconds": -1}, "settle_seconds"),
        ({"settle_seconds": 1.5}, "settle_seconds"),
        ({"settle_seconds": True}, "settle_seconds"),
        ({"settle_seconds": 86_401}, "settle_seconds"),
        ({"endpoints": {"tickets": {"settle_seconds": "60"}}}, "endpoints.tickets.settle_seconds"),
    ],
)
def test_bad_settle_seconds_name_the_key(options, key):
    credentials = APIKeyAuth(name="api_key", api_key="k", location="query")
    with pytest.raises(ConfigError) as error:
        support_api(base_url="https://api.example.com", credentials=credentials, **options)
    assert error.value.key_path == key


def test_bad_settle_seconds_in_a_dict_names_the_key_path():
    config = {
        "client": {"base_url": "https://api.example.com"},
        "resources": [
            {
                "name": "tickets",
                "endpoint": {"incremental": {"cursor_path": "updated_at", "settle_seconds": -5}},
            }
        ],
    }
    with pytest.raises(ConfigError) as error:
        support_api_from_config(config)
    assert error.value.key_path == "resources[0].endpoint.incremental.settle_seconds"


def test_the_margin_survives_dlt_copying_the_incremental():
    incremental = StableStateIncremental(cursor_path="updated_at", initial_value="2024-01-01")
    incremental.settle = settle.Settle(seconds=60, before_param="updated_before")
    assert isinstance(copied := incremental.copy(), StableStateIncremental)
    assert copied.settle == incremental.settle


@pytest.mark.parametrize(
    ("value", "epoch", "expected"),
    [
        ("2024-01-01T00:00:05Z", False, datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)),
        ("2024-01-01T00:00:05", False, datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)),
        ("12345", False, None),
        (1_704_067_205, False, None),
        (1_704_067_205, True, datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)),
        (1_704_067_205_000, True, datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)),
    ],
)
def test_only_timestamps_are_bounded(value, epoch, expected):
    assert settle.cursor_instant(value, epoch) == expected


def test_a_dict_takes_the_margin_from_its_incremental_block_or_the_defaults():
    incremental = {"cursor_path": "updated_at", "initial_value": "2024-01-01T00:00:00Z"}
    config: dict[str, Any] = {
        "client": {"base_url": "https://api.example.com"},
        "resource_defaults": {
            "endpoint": {"incremental": {"end_param": "until", "settle_seconds": 120}}
        },
        "resources": [
            {"name": "tickets", "endpoint": {"incremental": {**incremental}}},
            {"name": "users", "endpoint": {"incremental": {**incremental, "settle_seconds": 0}}},
            {"name": "window", "endpoint": {"incremental": {**incremental, "end_value": "2025"}}},
        ],
    }
    assert normalize_config(copy.deepcopy(config)).settle == {
        "tickets": settle.Settle(seconds=120, before_param="until", epoch_numbers=True)
    }
    config["resource_defaults"] = {}
    # without a block setting it: the default margin, kept on the client, timestamps only
    assert normalize_config(config).settle == {
        "tickets": settle.Settle(seconds=DEFAULT_SETTLE_SECONDS)
    }
    # the caller's dict is not changed
    assert config["resources"][1]["endpoint"]["incremental"]["settle_seconds"] == 0


@pytest.mark.parametrize("concurrency", [1, 4])
def test_rows_past_the_bound_are_dropped_when_the_api_ignores_updated_before(
    desk, tmp_path, concurrency
):
    server, clock = desk
    # the sandbox knows no `modified_before`: it serves rows past the bound all the same
    endpoints = {t: {"updated_before_param": "modified_before"} for t in DESK_TABLES}
    pipeline = make_pipeline(tmp_path)
    clock.wait(601)
    pipeline.run(desk_source(server, settle_seconds=600, endpoints=endpoints))
    before = {t: len(table_rows(pipeline, t)) for t in DESK_TABLES}
    server.mutate(updates=2, creates=2, tables=list(DESK_TABLES))
    clock.wait(300)
    server.reset_log()
    pipeline.run(
        desk_source(server, settle_seconds=600, endpoints=endpoints, concurrency=concurrency)
    )
    assert {t: len(table_rows(pipeline, t)) for t in DESK_TABLES} == before
    assert all("modified_before" in r.query for r in server.requests(path="/v1/tickets")[:1])
    clock.wait(301)
    pipeline.run(
        desk_source(server, settle_seconds=600, endpoints=endpoints, concurrency=concurrency)
    )
    for table in DESK_TABLES:
        assert_exact(pipeline, server, table)
