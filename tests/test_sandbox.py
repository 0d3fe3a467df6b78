"""Tests of the loopback sandbox itself: data generation, pagination, faults and auth."""

from __future__ import annotations

import base64
import itertools
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.sandbox import (
    SECRET_PREFIXES,
    SHAPES,
    TABLES,
    FakeClock,
    Fault,
    Route,
    SandboxServer,
    format_timestamp,
    generate_dataset,
    sandbox_secrets,
)
from tests.sandbox import server as sandbox_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def http():
    """A requests session that ignores proxy settings from the environment."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def keys(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(row["updated_at"], row["id"]) for row in rows]


def walk(http: requests.Session, server: SandboxServer, route: Route, **params: Any) -> list[int]:
    """Follows a route's pagination to the end and returns the ids in order."""
    url: str | None = server.url_for(route.path)
    query: dict[str, Any] | None = {route.page_size_param: 40, **params}
    ids: list[int] = []
    page = 1
    offset = 0
    for _ in range(100):
        assert url is not None
        response = http.get(url, params=query, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        rows = body if route.selector is None else body[route.selector]
        ids.extend(row["id"] for row in rows)
        kind = route.paginator
        if kind == "cursor":
            if body["next_cursor"] is None:
                return ids
            query = {**params, route.cursor_param: body["next_cursor"], route.page_size_param: 40}
        elif kind == "nested_cursor":
            if "paging" not in body:
                return ids
            query = {**params, "after": body["paging"]["next"]["after"], "limit": 40}
        elif kind == "json_link":
            url, query = body["next"], None
            if url is None:
                return ids
        elif kind == "header_link":
            if "next" not in response.links:
                return ids
            url, query = response.links["next"]["url"], None
        elif kind == "offset":
            if not rows:
                return ids
            offset += len(rows)
            query = {**params, "offset": offset, "limit": 40}
        else:
            assert kind == "page_number"
            if not rows:
                return ids
            page += 1
            query = {**params, "page": page, "per_page": 40}
    pytest.fail("pagination did not end")


# --- dataset -------------------------------------------------------------------------------------


def test_dataset_is_deterministic_per_seed():
    first, again, other = (generate_dataset(s, 120) for s in (3, 3, 4))
    for table in TABLES:
        assert list(first.rows(table)) == list(again.rows(table))
    assert list(first.rows("tickets")) != list(other.rows("tickets"))
    assert first.get("customers", 17) == again.get("customers", 17)


def test_default_and_overridden_table_sizes():
    dataset = generate_dataset(1, 1000, table_sizes={"brands": 6})
    counts = {table: dataset.count(table) for table in TABLES}
    assert counts == {
        "tickets": 1000,
        "ticket_comments": 2000,
        "organizations": 100,
        "agents": 20,
        "groups": 10,
        "brands": 6,
        "customers": 500,
    }
    small = generate_dataset(1, 10)
    assert small.count("organizations") == 5
    assert small.count("groups") == 3
    with pytest.raises(ValueError, match="unknown table"):
        generate_dataset(1, 10, table_sizes={"users": 3})


def test_rows_are_ordered_by_updated_at_then_id_with_same_second_ties():
    dataset = generate_dataset(5, 400)
    for table in TABLES:
        rows = list(dataset.rows(table))
        assert keys(rows) == sorted(keys(rows))
        assert [row["id"] for row in rows] == list(range(1, dataset.count(table) + 1))
        assert all(row["created_at"] <= row["updated_at"] for row in rows)
        assert all(row["updated_at"].endswith("Z") and len(row["updated_at"]) == 20 for row in rows)
    per_second = Counter(row["updated_at"] for row in dataset.rows("tickets"))
    assert max(per_second.values()) >= 3
    assert sum(1 for n in per_second.values() if n > 1) > len(per_second) // 3


def test_ticket_fields_look_like_a_support_desk():
    dataset = generate_dataset(5, 400)
    tickets = list(dataset.rows("tickets"))
    assert {t["status"] for t in tickets} == {"open", "pending", "solved", "closed"}
    assert {t["priority"] for t in tickets} == {None, "low", "normal", "high", "urgent"}
    assert {len(t["tags"]) for t in tickets} == {0, 1, 2, 3, 4}
    assert all(len(set(t["tags"])) == len(t["tags"]) for t in tickets)
    assert any(t["assignee_id"] is None for t in tickets)
    assert any(t["due_at"] is not None for t in tickets)
    assert all(1 <= t["requester_id"] <= dataset.count("customers") for t in tickets)
    field_values = {f["value"] for t in tickets for f in t["custom_fields"]}
    assert None in field_values
    assert set(dataset.get("organizations", 1)["organization_fields"]) == {
        "plan",
        "region",
        "seats",
    }


def test_updated_since_is_inclusive_and_updated_before_exclusive():
    dataset = generate_dataset(2, 300)
    rows = list(dataset.rows("tickets"))
    per_second = Counter(row["updated_at"] for row in rows)
    tied = next(
        stamp for stamp, n in per_second.items() if n > 1 and stamp != rows[0]["updated_at"]
    )
    since, total = dataset.page("tickets", 0, 1000, updated_since=tied)
    assert since == [row for row in rows if row["updated_at"] >= tied]
    assert total == len(since)
    assert since[0]["updated_at"] == tied
    before, total = dataset.page("tickets", 0, 1000, updated_before=tied)
    assert before == [row for row in rows if row["updated_at"] < tied]
    assert total == len(before)
    window, total = dataset.page(
        "tickets", 0, 1000, updated_since=tied, updated_before=tied.replace("Z", "+00:00")
    )
    assert (window, total) == ([], 0)
    # A fractional bound includes nothing from the earlier second.
    fractional = tied.replace("Z", ".5Z")
    after_fraction, _ = dataset.page("tickets", 0, 1000, updated_since=fractional)
    assert all(row["updated_at"] > tied for row in after_fraction)


def test_pages_concatenate_to_the_whole_table():
    dataset = generate_dataset(9, 250)
    pages = [dataset.page("ticket_comments", offset, 33)[0] for offset in range(0, 500, 33)]
    assert list(itertools.chain.from_iterable(pages)) == list(dataset.rows("ticket_comments"))
    rows, total = dataset.page("ticket_comments", 10_000, 10)
    assert (rows, total) == ([], 500)


def test_mutation_moves_rows_to_the_end_and_creates_new_ids():
    dataset = generate_dataset(4, 200)
    before = {table: dataset.max_updated_at(table) for table in TABLES}
    results = dataset.mutate(updates=5, creates=3, seed=42)
    assert set(results) == set(TABLES)
    tickets = results["tickets"]
    assert len(tickets.updated_ids) == 5
    assert tickets.created_ids == (201, 202, 203)
    assert dataset.count("tickets") == 203
    ids = dataset.ids("tickets")
    assert sorted(ids) == list(range(1, 204))
    moved = set(tickets.updated_ids) | set(tickets.created_ids)
    assert set(ids[-8:]) == moved
    tail = [dataset.get("tickets", row_id) for row_id in ids[-8:]]
    previous_max = before["tickets"]
    assert previous_max is not None
    assert all(row["updated_at"] > previous_max for row in tail)
    assert keys(tail) == sorted(keys(tail))
    rows = list(dataset.rows("tickets"))
    assert keys(rows) == sorted(keys(rows))
    # Pages with an offset see the same order, across the base/overlay boundary.
    pages = [dataset.page("tickets", offset, 7)[0] for offset in range(0, 210, 7)]
    assert list(itertools.chain.from_iterable(pages)) == rows
    # Incremental: everything changed is at or after the previous maximum.
    changed, total = dataset.page("tickets", 0, 100, updated_since=previous_max)
    assert moved <= {row["id"] for row in changed}
    assert total == len(changed)
    # The same seed on a fresh dataset makes the same changes.
    twin = generate_dataset(4, 200)
    assert twin.mutate(updates=5, creates=3, seed=42) == results
    assert list(twin.rows("tickets")) == rows


def test_updating_a_row_twice_moves_it_again():
    dataset = generate_dataset(4, 30)
    first = dataset.mutate(updates=30, creates=0, seed=1, tables=["tickets"])
    assert set(first) == {"tickets"}
    second = dataset.mutate(updates=2, creates=1, seed=2, tables=["tickets"])
    ids = dataset.ids("tickets")
    assert len(ids) == len(set(ids)) == 31
    assert set(ids[-3:]) == {*second["tickets"].updated_ids, 31}
    assert dataset.page("tickets", 0, 100)[1] == 31


def test_deep_offset_on_a_million_tickets_is_cheap_by_design():
    dataset = generate_dataset(1, 1_000_000)
    rows, total = dataset.page("tickets", 999_990, 100)
    assert total == 1_000_000
    assert [row["id"] for row in rows] == list(range(999_991, 1_000_001))
    middle = dataset.get("tickets", 500_000)["updated_at"]
    since, total = dataset.page("tickets", 100_000, 5, updated_since=middle)
    assert since[0]["updated_at"] >= middle
    assert total >= 500_000
    dataset.mutate(updates=2000, creates=10, seed=3, tables=["tickets"])
    rows, total = dataset.page("tickets", 999_010, 1000)
    assert total == 1_000_010
    assert [row["id"] for row in rows] == dataset.ids("tickets")[-1000:]
    assert [row["id"] for row in rows[-10:]] == list(range(1_000_001, 1_000_011))


def test_secrets_are_deterministic_recognizable_and_hidden_from_repr():
    secrets = sandbox_secrets(1)
    assert secrets == sandbox_secrets(1)
    assert secrets != sandbox_secrets(2)
    values = [
        secrets.client_id,
        secrets.client_secret,
        secrets.api_key,
        secrets.refresh_token,
        secrets.bearer_token,
    ]
    for value in values:
        prefix, _, tail = value.partition("-")
        assert f"{prefix}-" in SECRET_PREFIXES
        assert len(tail) >= 24
    assert secrets.client_secret.startswith("sbxsecret-")
    assert secrets.api_key.startswith("sbxkey-")
    assert secrets.refresh_token.startswith("sbxrefresh-")
    assert secrets.client_secret not in repr(secrets)
    assert secrets.api_key not in repr(secrets)


# --- pagination ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", SHAPES["kinds"], ids=lambda route: route.paginator)
def test_every_paginator_walks_every_id_exactly_once(sandbox_factory, http, route):
    server = sandbox_factory(seed=7, size=300, shape="kinds")
    ids = walk(http, server, route)
    assert ids == server.dataset.ids("tickets")
    assert len(ids) == len(set(ids)) == 300


@pytest.mark.parametrize("route", SHAPES["kinds"], ids=lambda route: route.paginator)
def test_every_paginator_applies_the_updated_since_filter(sandbox_factory, http, route):
    server = sandbox_factory(seed=7, size=300, shape="kinds")
    since = server.dataset.get("tickets", 150)["updated_at"]
    ids = walk(http, server, route, updated_since=since)
    expected = [row["id"] for row in server.dataset.rows("tickets") if row["updated_at"] >= since]
    assert ids == expected


def test_cursor_keeps_the_filter_and_changes_every_page(sandbox, http):
    since = sandbox.dataset.get("tickets", 200)["updated_at"]
    url = sandbox.url_for("/v1/tickets")
    body = http.get(url, params={"updated_since": since, "limit": 20}, timeout=10).json()
    cursors = []
    seen = [row["id"] for row in body["data"]]
    while body["next_cursor"] is not None:
        cursors.append(body["next_cursor"])
        # No updated_since here: the cursor carries it.
        body = http.get(url, params={"cursor": cursors[-1], "limit": 20}, timeout=10).json()
        assert all(row["updated_at"] >= since for row in body["data"])
        seen.extend(row["id"] for row in body["data"])
    assert len(cursors) == len(set(cursors)) >= 2
    assert seen == [
        row["id"] for row in sandbox.dataset.rows("tickets") if row["updated_at"] >= since
    ]


def test_cursor_walk_survives_a_mutation_midway(sandbox, http):
    url = sandbox.url_for("/v1/tickets")
    body = http.get(url, params={"limit": 100}, timeout=10).json()
    seen = [row["id"] for row in body["data"]]
    changed = sandbox.mutate(updates=10, creates=2, tables=["tickets"], seed=5)["tickets"]
    while body["next_cursor"] is not None:
        body = http.get(url, params={"cursor": body["next_cursor"], "limit": 100}, timeout=10)
        body = body.json()
        seen.extend(row["id"] for row in body["data"])
    # Keyset cursors never skip a row; updated rows already seen show up again at the end.
    assert set(seen) == set(range(1, 303))
    assert set(seen[-12:]) == {*changed.updated_ids, *changed.created_ids}


def test_response_shapes_of_the_presets(sandbox_factory, http):
    desk = sandbox_factory(seed=1, size=50, shape="desk")
    assert [route.path for route in desk.routes] == [f"/v1/{table}" for table in TABLES]
    body = http.get(desk.url_for("/v1/brands"), timeout=10).json()
    assert body == {"data": list(desk.dataset.rows("brands")), "next_cursor": None}

    seed001 = sandbox_factory(seed=1, size=50, shape="seed001")
    body = http.get(seed001.url_for("/v1/ticket_comments"), params={"limit": 5}, timeout=10)
    assert list(body.json()) == ["comments"]
    past_end = http.get(seed001.url_for("/v1/tickets"), params={"offset": 500}, timeout=10)
    assert past_end.json() == {"tickets": []}

    seed003 = sandbox_factory(seed=1, size=50, shape="seed003")
    first = http.get(seed003.url_for("/v1/resource"), params={"limit": 30}, timeout=10).json()
    assert first["paging"]["next"]["link"].startswith(seed003.url_for("/v1/resource?after="))
    last = http.get(first["paging"]["next"]["link"], timeout=10).json()
    assert "paging" not in last
    assert len(first["data"]) + len(last["data"]) == 50

    seed004 = sandbox_factory(seed=1, size=200, shape="seed004")
    assert len(http.get(seed004.url_for("/tickets"), timeout=10).json()["data"]) == 50

    seed002 = sandbox_factory(seed=1, size=50, shape="seed002")
    body = http.get(seed002.url_for("/v1/resource"), timeout=10).json()
    assert body["data"][0]["email"].endswith("@customer.example.net")


def test_totals_clamping_and_bad_parameters(sandbox_factory, http):
    routes = [
        Route("/offset", "tickets", "offset", include_total=True, max_page_size=25),
        Route("/pages", "tickets", "page_number", include_total=True),
        Route("/all", "agents", "single_page"),
    ]
    server = sandbox_factory(seed=2, size=300, routes=routes)
    body = http.get(server.url_for("/offset"), params={"limit": 1000}, timeout=10).json()
    assert (len(body["data"]), body["total"]) == (25, 300)
    assert len(http.get(server.url_for("/offset"), timeout=10).json()["data"]) == 25
    body = http.get(server.url_for("/pages"), params={"per_page": 70, "page": 5}, timeout=10)
    assert body.json()["page"] == 5
    assert body.json()["total_pages"] == 5
    assert len(body.json()["data"]) == 20
    body = http.get(server.url_for("/all"), params={"unknown": "x"}, timeout=10).json()
    assert len(body["data"]) == server.dataset.count("agents")
    for params in ({"limit": 0}, {"limit": -3}, {"limit": "ten"}, {"offset": -1}):
        response = http.get(server.url_for("/offset"), params=params, timeout=10)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"
    response = http.get(server.url_for("/pages"), params={"updated_since": "yesterday"}, timeout=10)
    assert response.status_code == 400
    bad_cursor = base64.urlsafe_b64encode(b'{"k": "x"}').decode()
    desk = sandbox_factory(seed=2, size=30)
    for cursor in ("%%%", bad_cursor):
        response = http.get(desk.url_for("/v1/tickets"), params={"cursor": cursor}, timeout=10)
        assert response.status_code == 400


def test_incremental_window_after_a_server_side_mutation(sandbox, http):
    last = sandbox.dataset.max_updated_at("tickets")
    changed = sandbox.mutate(updates=4, creates=2, tables=["tickets"])["tickets"]
    body = http.get(sandbox.url_for("/v1/tickets"), params={"updated_since": last}, timeout=10)
    rows = body.json()["data"]
    ids = {row["id"] for row in rows}
    assert {*changed.updated_ids, *changed.created_ids} <= ids
    assert all(row["updated_at"] >= last for row in rows)


# --- faults and rate limits ---------------------------------------------------------------------


def test_scripted_faults_are_served_in_order_then_normal_responses(sandbox, http):
    path = "/v1/agents"
    url = sandbox.url_for(path)
    sandbox.inject(
        path,
        [
            Fault(429, retry_after=3),
            Fault(500),
            Fault(kind="drop"),
            Fault(kind="malformed"),
            Fault(kind="html"),
            Fault(503, body='{"error": "maintenance"}', headers={"X-Trace": "abc"}),
        ],
    )
    assert sandbox.pending_faults(path) == 6
    limited = http.get(url, timeout=10)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert http.get(url, timeout=10).status_code == 500
    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=10)
    malformed = http.get(url, timeout=10)
    assert malformed.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        malformed.json()
    html = http.get(url, timeout=10)
    assert html.status_code == 200
    assert html.headers["Content-Type"].startswith("text/html")
    custom = http.get(url, timeout=10)
    assert (custom.status_code, custom.json(), custom.headers["X-Trace"]) == (
        503,
        {"error": "maintenance"},
        "abc",
    )
    assert http.get(url, timeout=10).json()["data"][0]["id"] == 1
    assert sandbox.pending_faults() == 0
    statuses = [record.status for record in sandbox.requests(path)]
    assert statuses == [429, 500, 0, 200, 200, 503, 200]
    assert [record.fault for record in sandbox.requests(path)][:3] == ["status", "status", "drop"]
    assert sandbox.count(path) == 7
    assert sandbox.count(path, status=200) == 3
    assert sandbox.count("/v1/tickets") == 0


def test_random_faults_are_reproducible(sandbox_factory, http):
    def statuses(server: SandboxServer) -> list[int]:
        url = server.url_for("/v1/brands")
        return [http.get(url, timeout=10).status_code for _ in range(30)]

    kinds = [Fault(502), Fault(503, retry_after=1)]
    first = sandbox_factory(seed=1, size=20, fault_rate=0.5, fault_kinds=kinds, fault_seed=9)
    second = sandbox_factory(seed=1, size=20, fault_rate=0.5, fault_kinds=kinds, fault_seed=9)
    observed = statuses(first)
    assert observed == statuses(second)
    assert set(observed) == {200, 502, 503}
    first.fault_rate = 0
    assert set(statuses(first)) == {200}


def test_rate_limit_headers_and_429(sandbox_factory, http):
    server = sandbox_factory(seed=1, size=20, rate_limit_per_second=4)
    responses = [http.get(server.url_for("/v1/groups"), timeout=10) for _ in range(12)]
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert ok
    assert limited
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == "4"
        assert 0 <= int(response.headers["X-RateLimit-Remaining"]) <= 3
        assert int(response.headers["X-RateLimit-Reset"]) >= 1
    assert ok[0].headers["X-RateLimit-Remaining"] == "3"
    for response in limited:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["X-RateLimit-Remaining"] == "0"
    server.rate_limit_per_second = None
    unlimited = http.get(server.url_for("/v1/groups"), timeout=10)
    assert unlimited.status_code == 200
    assert "X-RateLimit-Limit" not in unlimited.headers


class RecordedWaits:
    """Stands in for the `time` module in the sandbox server: `sleep` records, the rest is real."""

    def __init__(self, delays: list[float]) -> None:
        self.sleep = delays.append

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_latency_and_keep_alive(sandbox_factory, http, monkeypatch):
    # the server's waits are recorded, not slept: what it held each answer for, exactly
    delays: list[float] = []
    monkeypatch.setattr(sandbox_server, "time", RecordedWaits(delays))
    server = sandbox_factory(seed=1, size=20, latency_ms=30)
    response = http.get(server.url_for("/v1/brands"), timeout=10)
    assert response.status_code == 200
    assert delays == [0.03]
    assert "close" not in response.headers.get("Connection", "")
    assert int(response.headers["Content-Length"]) == len(response.content)
    server.latency_ms = 0
    for _ in range(5):
        http.get(server.url_for("/v1/brands"), timeout=10)
    assert delays == [0.03]
    assert len(server._connections) == 1


# --- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "good", "bad"),
    [
        (
            "api_key_query",
            lambda s: {"params": {"api_key": s.api_key}},
            {"params": {"api_key": "x"}},
        ),
        (
            "api_key_header",
            lambda s: {"headers": {"X-API-Key": s.api_key}},
            {"headers": {"X-API-Key": "x"}},
        ),
        (
            "bearer",
            lambda s: {"headers": {"Authorization": f"Bearer {s.bearer_token}"}},
            {"headers": {"Authorization": "Bearer sbxbearer-wrong"}},
        ),
    ],
)
def test_static_credentials(sandbox_factory, http, auth, good, bad):
    server = sandbox_factory(seed=3, size=20, auth=auth)
    url = server.url_for("/v1/brands")
    assert http.get(url, timeout=10, **good(server.secrets)).status_code == 200
    no_credentials: dict[str, Any] = {}
    for kwargs in (bad, no_credentials):
        response = http.get(url, timeout=10, **kwargs)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
    # Nothing recorded or answered carries the credential.
    assert server.secrets.api_key not in repr(server.requests())
    assert server.secrets.bearer_token not in repr(server.requests())
    kinds = {record.auth_kind for record in server.requests()}
    assert kinds == {auth, "none"}


def token(http: requests.Session, server: SandboxServer, **form: str) -> requests.Response:
    return http.post(server.url_for("/oauth/token"), data=form, timeout=10)


def test_oauth2_client_credentials_in_body_or_basic(sandbox_factory, http):
    server = sandbox_factory(seed=4, size=20, auth="oauth2")
    secrets = server.secrets
    url = server.url_for("/v1/tickets")
    missing = http.get(url, timeout=10)
    assert missing.status_code == 401
    granted = token(
        http,
        server,
        grant_type="client_credentials",
        client_id=secrets.client_id,
        client_secret=secrets.client_secret,
    ).json()
    assert granted["token_type"] == "Bearer"
    assert granted["expires_in"] == 3600
    assert granted["access_token"].startswith("sbxaccess-")
    assert "refresh_token" not in granted
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    assert http.get(url, headers=bearer, timeout=10).status_code == 200

    basic = http.post(
        server.url_for("/oauth/v1/token"),
        data={"grant_type": "client_credentials"},
        auth=(secrets.client_id, secrets.client_secret),
        timeout=10,
    )
    assert basic.status_code == 200
    assert server.requests("/oauth/v1/token")[0].auth_kind == "basic"
    for wrong in (
        {"client_id": secrets.client_id, "client_secret": "sbxsecret-nope"},
        {"client_id": "someone", "client_secret": secrets.client_secret},
        {},
    ):
        refused = token(http, server, grant_type="client_credentials", **wrong)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
    unknown = http.get(url, headers={"Authorization": "Bearer sbxaccess-unknown"}, timeout=10)
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    unsupported = token(
        http,
        server,
        grant_type="password",
        client_id=secrets.client_id,
        client_secret=secrets.client_secret,
    )
    assert (unsupported.status_code, unsupported.json()["error"]) == (400, "unsupported_grant_type")
    assert server.issued_access_tokens == 2
    assert server.token_requests == {"client_credentials": 5, "password": 1}


def test_oauth2_refresh_rotation_makes_the_old_token_single_use(sandbox_factory, http):
    server = sandbox_factory(seed=4, size=20, auth="oauth2")
    secrets = server.secrets
    client = {"client_id": secrets.client_id, "client_secret": secrets.client_secret}
    first_refresh = secrets.refresh_token
    assert server.current_refresh_token == first_refresh
    rotated = token(http, server, grant_type="refresh_token", refresh_token=first_refresh, **client)
    assert rotated.status_code == 200
    second_refresh = rotated.json()["refresh_token"]
    assert second_refresh.startswith("sbxrefresh-")
    assert second_refresh != first_refresh
    assert server.current_refresh_token == second_refresh
    reused = token(http, server, grant_type="refresh_token", refresh_token=first_refresh, **client)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert first_refresh not in reused.text

    # The rotation happens even when the response is lost on the way back.
    server.inject("/oauth/token", [Fault(kind="drop_after_processing")])
    with pytest.raises(requests.ConnectionError):
        token(http, server, grant_type="refresh_token", refresh_token=second_refresh, **client)
    assert server.current_refresh_token not in {first_refresh, second_refresh}
    lost = token(http, server, grant_type="refresh_token", refresh_token=second_refresh, **client)
    assert lost.json()["error"] == "invalid_grant"
    assert server.issued_refresh_tokens == 2


def test_oauth2_refresh_without_rotation_keeps_the_token(sandbox_factory, http):
    server = sandbox_factory(seed=4, size=20, auth="oauth2", rotate_refresh_tokens=False)
    secrets = server.secrets
    client = {"client_id": secrets.client_id, "client_secret": secrets.client_secret}
    for _ in range(2):
        response = token(
            http, server, grant_type="refresh_token", refresh_token=secrets.refresh_token, **client
        )
        assert response.status_code == 200
        assert "refresh_token" not in response.json()
    server.revoke_refresh_token()
    revoked = token(
        http, server, grant_type="refresh_token", refresh_token=secrets.refresh_token, **client
    )
    assert revoked.json()["error"] == "invalid_grant"


def test_oauth2_access_tokens_expire_on_the_server_clock(sandbox_factory, http):
    clock = FakeClock()
    assert clock() == 1_700_000_000.0
    server = sandbox_factory(seed=4, size=20, auth="oauth2", access_token_ttl=30, clock=clock)
    secrets = server.secrets
    granted = token(
        http,
        server,
        grant_type="client_credentials",
        client_id=secrets.client_id,
        client_secret=secrets.client_secret,
    ).json()
    assert granted["expires_in"] == 30
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    url = server.url_for("/v1/groups")
    clock.advance(29)
    assert http.get(url, headers=bearer, timeout=10).status_code == 200
    clock.advance(1)
    expired = http.get(url, headers=bearer, timeout=10)
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert granted["access_token"] not in expired.text


def test_token_endpoint_faults_can_be_switched_off(sandbox_factory, http):
    server = sandbox_factory(
        seed=4, size=20, auth="oauth2", fault_rate=1.0, fault_kinds=[Fault(503)]
    )
    secrets = server.secrets
    form = {
        "grant_type": "client_credentials",
        "client_id": secrets.client_id,
        "client_secret": secrets.client_secret,
    }
    assert token(http, server, **form).status_code == 503
    server.fault_token_endpoint = False
    assert token(http, server, **form).status_code == 200


# --- routing, admin, lifecycle --------------------------------------------------------------------


def test_unknown_paths_and_wrong_methods(sandbox, http):
    missing = http.get(sandbox.url_for("/v1/nothing"), timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = http.post(sandbox.url_for("/v1/tickets"), json={}, timeout=10)
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET")
    assert http.get(sandbox.url_for("/oauth/token"), timeout=10).status_code == 405
    assert http.head(sandbox.url_for("/v1/tickets"), timeout=10).status_code == 405
    # The connection is still usable after an error with a body.
    assert http.get(sandbox.url_for("/v1/brands"), timeout=10).status_code == 200
    assert http.get(sandbox.url_for("/_sandbox/stats"), timeout=10).status_code == 404


def test_admin_routes_mutate_and_report_without_being_logged(sandbox_factory, http):
    server = sandbox_factory(seed=1, size=40, admin_routes=True)
    http.get(server.url_for("/v1/tickets"), timeout=10)
    http.get(server.url_for("/v1/nowhere"), timeout=10)
    mutated = http.post(
        server.url_for("/_sandbox/mutate"),
        params={"updates": 2, "creates": 1, "tables": "tickets"},
        timeout=10,
    ).json()["mutated"]
    assert list(mutated) == ["tickets"]
    assert mutated["tickets"]["created_ids"] == [41]
    stats = http.get(server.url_for("/_sandbox/stats"), timeout=10).json()
    assert stats["requests"] == {"/v1/tickets": {"200": 1}, "/v1/nowhere": {"404": 1}}
    assert stats["total"] == 2
    assert http.get(server.url_for("/_sandbox/mutate"), timeout=10).status_code == 405
    server.reset_log()
    assert server.count() == 0


def test_stop_closes_keep_alive_connections_and_frees_the_port(http):
    server = SandboxServer(seed=1, size=10).start()
    url = server.url_for("/v1/brands")
    assert http.get(url, timeout=10).status_code == 200
    server.stop()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=10)
    with SandboxServer(seed=1, size=10) as again:
        assert http.get(again.url_for("/v1/brands"), timeout=10).status_code == 200


def test_default_fixture(sandbox):
    assert sandbox.shape == "desk"
    assert sandbox.auth == "none"
    assert sandbox.dataset.seed == 7
    assert sandbox.dataset.count("tickets") == 300
    assert sandbox.url.startswith("http://127.0.0.1:")


def test_command_line_server_prints_one_ready_line_and_stops_on_sigterm(http):
    command = [sys.executable, "-m", "tests.sandbox", "--port", "0", "--seed", "5", "--size", "30"]
    command += ["--auth", "api_key_header", "--mutate-endpoint"]
    process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own module
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        ready = json.loads(line)
        assert set(ready) == {"url", "shape", "auth", "pid"}
        assert (ready["shape"], ready["auth"], ready["pid"]) == (
            "desk",
            "api_key_header",
            process.pid,
        )
        key = {"X-API-Key": sandbox_secrets(5).api_key}
        response = http.get(f"{ready['url']}/v1/tickets", headers=key, timeout=10)
        assert len(response.json()["data"]) == 30
        stats = http.get(f"{ready['url']}/_sandbox/stats", timeout=10).json()
        assert stats["requests"] == {"/v1/tickets": {"200": 1}}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "sbx" not in line + out + err


def test_a_pending_change_is_stamped_at_once_and_shown_only_when_committed():
    dataset = generate_dataset(3, 50)
    before = {row["id"]: row for row in dataset.rows("tickets")}
    held = dataset.mutate(updates=3, creates=2, tables=["tickets"], pending=True)["tickets"]
    stamp_of_held = dataset.now
    shown = dataset.mutate(updates=1, creates=1, tables=["tickets"])["tickets"]
    assert dataset.pending == 5
    visible = {row["id"]: row for row in dataset.rows("tickets")}
    # readers see the previous versions, and no created row, until the commit
    for row_id in held.updated_ids:
        assert visible[row_id] == before[row_id] or row_id in shown.updated_ids
    assert not set(held.created_ids) & set(visible)
    assert dataset.count("tickets") == 50 + 1
    with pytest.raises(KeyError):
        dataset.get("tickets", held.created_ids[0])
    # the held ids are neither updated nor deleted while pending
    later = dataset.mutate(updates=50, creates=0, tables=["tickets"], deletes=1)["tickets"]
    assert not set(held.created_ids) & {*later.updated_ids, *later.deleted_ids}

    assert dataset.commit_pending() == 5
    assert dataset.pending == 0
    after = {row["id"]: row for row in dataset.rows("tickets")}
    assert set(held.created_ids) <= set(after)
    assert dataset.count("tickets") == 50 + 3
    for row_id in held.created_ids:
        # shown with the stamp it got when the change started, before newer ones
        assert after[row_id]["updated_at"] <= format_timestamp(stamp_of_held)
    for row_id in held.updated_ids:
        # rows changed and committed since keep their newer version
        assert after[row_id] == dataset.get("tickets", row_id)
        assert after[row_id]["updated_at"] > before[row_id]["updated_at"]


def test_commit_pending_shows_the_oldest_changes_first():
    dataset = generate_dataset(3, 20)
    first = dataset.mutate(updates=0, creates=1, tables=["tickets"], pending=True)["tickets"]
    second = dataset.mutate(updates=0, creates=1, tables=["tickets"], pending=True)["tickets"]
    assert dataset.commit_pending(1) == 1
    ids = dataset.ids("tickets")
    assert first.created_ids[0] in ids
    assert second.created_ids[0] not in ids


def test_time_passes_without_changes():
    dataset = generate_dataset(3, 20)
    now = dataset.now
    assert dataset.advance(90) == now + 90
    created = dataset.mutate(updates=0, creates=1, tables=["tickets"])["tickets"]
    assert dataset.get("tickets", created.created_ids[0])["updated_at"] == format_timestamp(
        now + 91
    )
    with pytest.raises(ValueError, match="back"):
        dataset.advance(-1)


def test_the_hook_runs_before_each_data_page(sandbox_factory, http):
    server = sandbox_factory(seed=3, size=20, shape="desk")
    seen: list[str] = []
    server.before_data_request = lambda route: seen.append(route.path)
    http.get(f"{server.url}/v1/tickets")
    http.get(f"{server.url}/v1/agents")
    assert seen == ["/v1/tickets", "/v1/agents"]


def test_comments_nested_under_tickets_walk_every_comment_once(sandbox_factory, http):
    server = sandbox_factory(seed=5, size=120, shape="desk_nested", latency_ms=5)
    route = server.route("/v1/tickets/{ticket_id}/comments")
    assert (route.parent_table, route.parent_field) == ("tickets", "ticket_id")
    server.reset_log()
    seen: list[int] = []
    pages = 0
    for ticket_id in server.dataset.ids("tickets"):
        url = server.url_for(f"/v1/tickets/{ticket_id}/comments")
        query: dict[str, Any] = {"limit": 2}
        mine: list[int] = []
        while True:
            response = http.get(url, params=query, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            assert all(row["ticket_id"] == ticket_id for row in body["data"])
            mine += [row["id"] for row in body["data"]]
            if body["next_cursor"] is None:
                break
            query = {"cursor": body["next_cursor"], "limit": 2}
        # a ticket's comments come in the table's order, (updated_at, id)
        assert mine == [i for i in server.dataset.ids("ticket_comments") if i in set(mine)]
        seen += mine
    assert sorted(seen) == sorted(server.dataset.ids("ticket_comments"))
    assert len(seen) == len(set(seen)) == 240
    assert pages > 120  # some tickets have more than two comments: their pages were followed
    stats = server.stats()
    assert stats["requests"] == {"/v1/tickets/{ticket_id}/comments": {"200": pages}}
    assert stats["busy_s"] >= pages * 0.005  # the latency applies to nested routes too
    assert server.count("/v1/tickets/1/comments") >= 1


def test_nested_route_filters_follow_changes_and_refuse_unknown_parents(sandbox_factory, http):
    server = sandbox_factory(seed=5, size=30, shape="desk_nested")
    ticket = next(
        t
        for t in range(1, 31)
        if len(server.dataset.index("ticket_comments", "ticket_id").get(t, [])) >= 2
    )
    url = server.url_for(f"/v1/tickets/{ticket}/comments")
    before = [row["id"] for row in http.get(url, timeout=10).json()["data"]]
    changed = server.mutate(updates=60, creates=0, tables=["ticket_comments"], seed=1)
    after = http.get(url, timeout=10).json()["data"]
    assert sorted(row["id"] for row in after) == sorted(before)  # updates keep the parent
    assert all(
        row["body"].endswith("(edited)")
        for row in after
        if row["id"] in changed["ticket_comments"].updated_ids
    )
    since = after[-1]["updated_at"]
    filtered = http.get(url, params={"updated_since": since}, timeout=10).json()["data"]
    assert [row["id"] for row in filtered] == [
        row["id"] for row in after if row["updated_at"] >= since
    ]
    for missing in ("/v1/tickets/31/comments", "/v1/tickets/0/comments", "/v1/tickets/x/comments"):
        response = http.get(server.url_for(missing), timeout=10)
        assert response.status_code == 404
    with pytest.raises(ValueError, match="one"):
        Route("/v1/tickets/{ticket_id}/comments", "ticket_comments")
