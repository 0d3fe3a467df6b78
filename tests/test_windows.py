"""Time-window walks of cursor-paged endpoints: every row once, whatever the spread over time."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import support_api
from sources.support_api.settle import bound_param
from sources.support_api.windows import (
    WindowPlan,
    parse_cursor,
    walk_in_windows,
)
from tests.helpers import make_pipeline, table_ids
from tests.sandbox import SandboxServer
from tests.sandbox.fixtures import SandboxFactory

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 1, tzinfo=UTC)
PAGE = 10
LATENCY = 0.01
"""The fake API's latency by default: long enough for the consumer's waits to add walks."""


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeApi:
    """A cursor-paged API over an in-memory table, filtering `updated_since`/`updated_before`.

    Rows come ordered by `(updated_at, id)` unless `shuffled`; the cursor is the row offset in
    the filtered view, so a walk sees the rows as they were when it started.
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        shuffled: bool = False,
        delay: float = LATENCY,
        first_page_delays: dict[int, float] | None = None,
    ) -> None:
        self.rows = sorted(rows, key=lambda r: (r["updated_at"], r["id"]))
        if shuffled:
            random.Random(7).shuffle(self.rows)  # noqa: S311 - reproducible order, not security
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = delay
        self.first_page_delays = first_page_delays or {}
        """Seconds the first request of the n-th walk to start takes instead of `delay` (walk
        1 sends the run's first request)."""
        self.walks_started = 0

    def view(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        since = parse_cursor(params.get("updated_since"))
        before = parse_cursor(params.get("updated_before"))
        kept = []
        for row in self.rows:
            moment = parse_cursor(row["updated_at"])
            if moment is None or (
                (since is None or moment >= since) and (before is None or moment < before)
            ):
                kept.append(row)
        return kept

    def fetch(self, params: dict[str, Any]) -> Iterator[tuple[list[Any], bool]]:
        view = self.view(params)
        offset = 0
        while True:
            with self.lock:
                self.requests.append(dict(params, offset=offset))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                delay = self.delay
                if offset == 0:
                    self.walks_started += 1
                    delay = self.first_page_delays.get(self.walks_started, delay)
            time.sleep(delay)
            with self.lock:
                self.in_flight -= 1
            page = [dict(r) for r in view[offset : offset + PAGE]]
            offset += PAGE
            more = offset < len(view)
            yield page, more
            if not more:
                return


def rows_at(moments: list[datetime]) -> list[dict[str, Any]]:
    return [{"id": i + 1, "updated_at": iso(m)} for i, m in enumerate(moments)]


def plan(concurrency: int = 4) -> WindowPlan:
    return WindowPlan("updated_at", "updated_since", "updated_before", concurrency)


def read_all(api: FakeApi, params: dict[str, Any], concurrency: int = 4) -> list[int]:
    pages = walk_in_windows(api.fetch, plan(concurrency), params, now=NOW)
    return [row["id"] for page in pages for row in page]


def spreads() -> dict[str, list[datetime]]:
    rng = random.Random(3)  # noqa: S311 - reproducible spreads, not security
    return {
        "uniform": [EPOCH + timedelta(seconds=rng.randrange(4 * 86400)) for _ in range(400)],
        "recent_burst": [NOW - timedelta(seconds=rng.randrange(600)) for _ in range(400)],
        "one_second": [EPOCH] * 120,
        "two_clusters": [EPOCH + timedelta(seconds=rng.randrange(60)) for _ in range(200)]
        + [EPOCH + timedelta(days=400, seconds=rng.randrange(60)) for _ in range(200)],
        "in_the_future": [NOW + timedelta(days=1, seconds=i) for i in range(150)],
    }


@pytest.mark.parametrize("spread", list(spreads()))
@pytest.mark.parametrize("concurrency", [2, 8])
def test_every_row_is_read_exactly_once(spread, concurrency):
    rows = rows_at(spreads()[spread])
    api = FakeApi(rows)
    ids = read_all(api, {"updated_since": "2000-01-01T00:00:00Z", "limit": PAGE}, concurrency)
    assert sorted(ids) == [r["id"] for r in sorted(rows, key=lambda r: r["id"])]


def random_case(seed: int) -> tuple[list[datetime], datetime, dict[str, Any], int]:
    """A reproducible spread of rows, a lower bound, the fake API's latencies and the walks."""
    rng = random.Random(seed)  # noqa: S311 - reproducible cases, not security
    count = rng.randrange(1, 300)
    span = rng.choice([60, 3600, 30 * 86400, 900 * 86400])
    start = NOW - timedelta(seconds=span)
    shape = rng.choice(["uniform", "clusters", "head", "tail", "ties"])
    if shape == "uniform":
        offsets = [rng.randrange(span) for _ in range(count)]
    elif shape == "clusters":
        centres = [0, span // 3, span - 50]
        offsets = [rng.choice(centres) + rng.randrange(40) for _ in range(count)]
    elif shape == "head":
        offsets = [rng.randrange(min(span, 120)) for _ in range(count)]
    elif shape == "tail":
        offsets = [span - rng.randrange(min(span, 120)) for _ in range(count)]
    else:
        offsets = [rng.randrange(3) for _ in range(count)]
    since = start - timedelta(seconds=rng.randrange(100))
    delays = {
        "delay": rng.choice([0.0, 0.001, 0.005, 0.02]),
        "first_page_delays": rng.choice([None, {1: 0.0}, {1: 0.03}]),
    }
    concurrency = rng.choice([1, 2, 4, 16])
    return [start + timedelta(seconds=s) for s in offsets], since, delays, concurrency


@pytest.mark.parametrize("seed", range(24))
def test_every_row_is_read_exactly_once_at_random_spreads_latencies_and_walks(seed):
    # a broad net over spreads, latencies and walk counts: whatever the timing, no row may be
    # lost or read twice (the cut of a walk whose request is in flight, which timing alone
    # seldom produces, has its own test below)
    moments, since, delays, concurrency = random_case(seed)
    api = FakeApi(rows_at(moments), **delays)
    ids = read_all(api, {"updated_since": iso(since), "limit": PAGE}, concurrency)
    assert sorted(ids) == list(range(1, len(moments) + 1)), (seed, len(api.requests))


def test_a_window_cut_while_its_first_request_is_in_flight_drops_the_rows_past_the_cut():
    # Walk A reads a dense half hour; walk B, cut from it, waits 1 s on its first request.
    # Once A is done, B is cut again at the density A measured, while B's request is still
    # out. B's range is sparse, so its first page reaches past the new cut: those rows
    # belong to the new walk C, and B must drop them though it asked for them.
    # The margins are wide for a busy machine (parallel test workers): A's ~9 pages of 50 ms
    # end long before B's answer, and the consumer's wait for A's last answer (50 ms) stays
    # above the 5 ms after which it cuts a walk unless it asks over 45 ms late.
    since = NOW - timedelta(hours=1)
    dense = [since + timedelta(seconds=i * 1800 // 80) for i in range(80)]
    sparse = [since + timedelta(seconds=1950 + i * 1600 // 12) for i in range(12)]
    api = FakeApi(rows_at(dense + sparse), delay=0.05, first_page_delays={2: 1.0})
    ids = read_all(api, {"updated_since": iso(since), "limit": PAGE}, concurrency=2)
    assert sorted(ids) == list(range(1, 93))
    starts = sorted(moment for start in walks_of(api) if (moment := parse_cursor(start)))
    assert len(starts) == 3
    # C starts inside B's range: B's first page (its only one) held rows on both sides
    b_rows = [m for m in sparse if starts[1] <= m]
    assert b_rows[PAGE - 1] >= starts[2] > b_rows[0]


def test_windows_run_at_once_and_split_where_the_rows_are():
    rows = rows_at([EPOCH + timedelta(seconds=i * 60) for i in range(600)])
    api = FakeApi(rows)
    ids = read_all(api, {"updated_since": "2000-01-01T00:00:00Z"}, concurrency=4)
    assert sorted(ids) == list(range(1, 601))
    assert api.most_in_flight == 4
    starts = {r.get("updated_since") for r in api.requests}
    assert len(starts) > 4
    # a walk costs at most one page more than a single walk would (where a window was cut)
    walks = len({(r.get("updated_since"), r.get("updated_before")) for r in api.requests})
    assert len(api.requests) <= 600 // PAGE + 2 * walks


def evenly_spread(pages: int, since: datetime) -> list[dict[str, Any]]:
    """Rows of `pages` full pages, spread evenly over the hour after `since`."""
    count = pages * PAGE
    return rows_at([since + timedelta(seconds=i * 3600 // count) for i in range(count)])


def walks_of(api: FakeApi) -> Counter[Any]:
    """Requests per walk (the lower bound a walk was started with): its chain of round trips."""
    return Counter(r.get("updated_since") for r in api.requests)


@pytest.mark.parametrize(("pages", "most_requests"), [(2, 2), (3, 4), (6, 9)])
def test_an_incremental_run_over_a_few_pages_costs_about_those_pages(pages, most_requests):
    # the changes of the last hour, up to now, as a frequent incremental run reads them: the
    # first page spans half, a third or a sixth of the range, so cutting the rest into 16
    # windows would cost a request each for less than a page each (13, 14 and 17 requests)
    since = NOW - timedelta(hours=1)
    api = FakeApi(evenly_spread(pages, since))
    ids = read_all(api, {"updated_since": iso(since), "limit": PAGE}, concurrency=16)
    assert sorted(ids) == list(range(1, pages * PAGE + 1))
    assert len(api.requests) <= most_requests


def test_the_range_after_the_first_page_is_cut_into_windows_of_a_page_or_two_at_once():
    # 20 pages over the last hour, 16 walks allowed. The first page shows the density, and
    # the rest is cut at once into windows of one or two pages each, including windows whose
    # walk has not answered yet. Cutting only walks that had answered left windows of up to
    # 1,072 s here (6 pages), read one request after another.
    since = NOW - timedelta(hours=1)
    # every request after the first takes 300 ms: all the cuts are made before they answer
    api = FakeApi(evenly_spread(20, since), delay=0.3, first_page_delays={1: LATENCY})
    ids = read_all(api, {"updated_since": iso(since), "limit": PAGE}, concurrency=16)
    assert sorted(ids) == list(range(1, 20 * PAGE + 1))
    starts = [parse_cursor(start) for start in walks_of(api)]
    bounds = sorted(start for start in starts if start is not None)
    assert len(bounds) == len(starts)
    windows = [(b - a).total_seconds() for a, b in zip(bounds, [*bounds[1:], NOW], strict=True)]
    page_seconds = 3600 / 20
    assert len(windows) >= 10
    assert max(windows[1:]) <= 2 * page_seconds
    assert len(api.requests) <= 20 + len(windows)


def test_no_more_windows_while_pages_wait_for_a_slow_consumer():
    # an instant API and a consumer that takes 20 ms a page: pages pile up in the queue, so
    # extra walks would only compete with the consumer; few are started
    rows = rows_at([EPOCH + timedelta(seconds=i * 60) for i in range(800)])
    api = FakeApi(rows, delay=0.0)
    ids: list[int] = []
    for page in walk_in_windows(
        api.fetch, plan(8), {"updated_since": "2000-01-01T00:00:00Z"}, now=NOW
    ):
        ids.extend(row["id"] for row in page)
        time.sleep(0.02)
    assert sorted(ids) == list(range(1, 801))
    walks = {(r.get("updated_since"), r.get("updated_before")) for r in api.requests}
    assert len(walks) <= 3


def test_no_more_windows_for_pages_that_are_only_a_fetch_away():
    # an instant API and a quick consumer: the consumer never waits long, so a second walk
    # would only cut a window (a request more) without reading faster
    rows = rows_at([EPOCH + timedelta(seconds=i * 60) for i in range(800)])
    api = FakeApi(rows, delay=0.0)
    ids = read_all(api, {"updated_since": "2000-01-01T00:00:00Z"}, concurrency=8)
    assert sorted(ids) == list(range(1, 801))
    assert api.most_in_flight == 1
    assert len(api.requests) == 800 // PAGE


def test_a_range_that_fits_one_page_is_one_request():
    api = FakeApi(rows_at([EPOCH + timedelta(seconds=i) for i in range(PAGE - 1)]))
    params = {"updated_since": "2024-01-01T00:00:00Z", "limit": PAGE}
    assert sorted(read_all(api, params)) == list(range(1, PAGE))
    assert api.requests == [dict(params, offset=0)]


def test_the_first_request_is_the_one_a_single_walk_sends():
    api = FakeApi(rows_at([EPOCH + timedelta(seconds=i) for i in range(50)]))
    params = {"updated_since": "2024-01-01T00:00:00Z", "limit": PAGE}
    read_all(api, params)
    assert api.requests[0] == dict(params, offset=0)


def test_an_end_bound_is_kept_by_every_window():
    rows = rows_at([EPOCH + timedelta(seconds=i * 10) for i in range(300)])
    api = FakeApi(rows)
    end = EPOCH + timedelta(seconds=2000)
    params = {"updated_since": iso(EPOCH), "updated_before": iso(end)}
    ids = read_all(api, params)
    assert sorted(ids) == list(range(1, 201))
    assert all(r["updated_before"] <= iso(end) for r in api.requests)


class PagesClock:
    """A clock that moves 10 ms with every request the fake API serves: 100 pages a second."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def __call__(self) -> float:
        with self.api.lock:
            return len(self.api.requests) * 0.01


def walk_under_a_budget(budget: tuple[float, float]) -> FakeApi:
    """Reads 600 rows in up to four walks under a rate-limit `budget`; returns the fake API."""
    rows = rows_at([EPOCH + timedelta(seconds=i * 60) for i in range(600)])
    api = FakeApi(rows)
    pages = walk_in_windows(
        api.fetch,
        plan(4),
        {"updated_since": "2000-01-01T00:00:00Z"},
        now=NOW,
        budget=lambda: budget,
        clock=PagesClock(api),
    )
    assert sorted(row["id"] for page in pages for row in page) == list(range(1, 601))
    return api


def test_no_walk_is_added_that_the_rate_limit_could_not_feed():
    # 19 requests left for the next second, one walk already does 100 a second: a second walk
    # would only cut its window in two (one request more), not go faster
    api = walk_under_a_budget((19.0, 1.0))
    assert api.most_in_flight == 1
    assert len(api.requests) == 600 // PAGE


def test_walks_are_added_while_the_rate_limit_budget_would_last():
    # an hourly budget of 10,000: at 100 pages a second per walk, four walks spend 4,000 in
    # the next 10 seconds (the horizon), so all four run
    api = walk_under_a_budget((10_000.0, 3600.0))
    assert api.most_in_flight == 4


def test_rows_out_of_order_are_still_read_once_and_stop_the_splitting():
    rows = rows_at([EPOCH + timedelta(seconds=i * 30) for i in range(300)])
    api = FakeApi(rows, shuffled=True)
    ids = read_all(api, {"updated_since": iso(EPOCH)}, concurrency=4)
    assert sorted(ids) == list(range(1, 301))
    # nothing was split once the first page showed the disorder
    assert {r.get("updated_since") for r in api.requests} == {iso(EPOCH)}


def test_records_without_a_timestamp_are_kept_and_stop_the_splitting():
    rows = rows_at([EPOCH + timedelta(seconds=i) for i in range(40)])
    rows[3]["updated_at"] = "not a time"
    api = FakeApi([r for r in rows if r["id"] != 4])
    api.rows.insert(0, rows[3])
    ids = read_all(api, {"updated_since": iso(EPOCH)})
    assert sorted(ids) == list(range(1, 41))
    assert len(api.requests) == 4


def test_an_error_in_one_window_is_raised_and_stops_the_others():
    rows = rows_at([EPOCH + timedelta(seconds=i * 60) for i in range(400)])
    api = FakeApi(rows)
    calls = 0

    def failing(params: dict[str, Any]) -> Iterator[tuple[list[Any], bool]]:
        nonlocal calls
        for number, page in enumerate(api.fetch(params)):
            calls += 1
            if number == 2 and params.get("updated_since") != iso(EPOCH):
                raise RuntimeError("boom in a window")
            yield page

    with pytest.raises(RuntimeError, match="boom in a window"):
        list(walk_in_windows(failing, plan(4), {"updated_since": iso(EPOCH)}, now=NOW))
    assert len(api.requests) < 40
    assert threading.active_count() < 10


def test_closing_the_generator_early_stops_every_walk():
    rows = rows_at([EPOCH + timedelta(seconds=i * 60) for i in range(2000)])
    api = FakeApi(rows)
    pages = walk_in_windows(api.fetch, plan(4), {"updated_since": iso(EPOCH)}, now=NOW)
    next(pages)
    next(pages)
    pages.close()
    count = len(api.requests)
    time.sleep(0.1)
    assert len(api.requests) == count
    assert count < 2000 // PAGE


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-02T03:04:05Z"),
        ("2024-01-01T00:00:00+00:00", "2024-01-02T03:04:05+00:00"),
        (1704067200, 1704164645),
    ],
)
def test_bounds_are_written_like_the_api_writes_its_cursor(sample, expected):
    bound = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert bound_param(bound, sample) == expected
    assert parse_cursor(expected) == bound


def test_the_source_reads_the_sandbox_in_windows_with_latency(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=4, size=3000, shape="desk", latency_ms=5.0)
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api(base_url=server.url, credentials=credentials, resources=["tickets"]))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    windows = {r.query.get("updated_since") for r in server.requests(path="/v1/tickets")}
    assert len(windows) > 1
    requests = server.count(path="/v1/tickets")
    assert requests <= 3000 // 100 + 2 * len(windows)

    server.mutate(updates=20, creates=5)
    pipeline.run(support_api(base_url=server.url, credentials=credentials, resources=["tickets"]))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    assert server.count(path="/v1/tickets") == requests + 1


def load_under_a_limit(
    sandbox_factory: SandboxFactory, tmp_path: Path, latency_ms: float
) -> SandboxServer:
    """Loads 4,000 tickets (up to 8 walks) from a sandbox allowing 20 requests a second.

    Checks every row loaded and not one request bounced off a 429 (on failure, the answers in
    each of the server's 1-second windows are shown).
    """
    server = sandbox_factory(
        seed=4, size=4000, shape="desk", rate_limit_per_second=20, latency_ms=latency_ms
    )
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    pipeline = make_pipeline(tmp_path)
    source = support_api(
        base_url=server.url, credentials=credentials, resources=["tickets"], concurrency=8
    )
    pipeline.run(source)
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    windows = Counter((math.floor(r.at), r.status) for r in server.requests("/v1/tickets"))
    assert server.count(path="/v1/tickets", status=429) == 0, sorted(windows.items())
    return server


def test_windows_sharing_a_rate_limit_stay_under_it(sandbox_factory, tmp_path):
    # windows in flight, each answer 200 ms away (walks are added until they would spend the
    # budget): the pacer counts what is out and waits for the turn of the window
    server = load_under_a_limit(sandbox_factory, tmp_path, latency_ms=200)
    assert server.count(path="/v1/tickets", status=200) >= 4000 // 100
    assert len({r.query.get("updated_since") for r in server.requests("/v1/tickets")}) > 1


def test_a_rate_limit_a_single_walk_outruns_gets_no_more_walks(sandbox_factory, tmp_path):
    # answers come at once: one walk is faster than the limit, so no window is cut (before,
    # eight walks ran and cut windows cost about 20 requests more)
    server = load_under_a_limit(sandbox_factory, tmp_path, latency_ms=0)
    # a first answer slower than 100 ms (a busy machine) may let one more walk start
    assert server.count(path="/v1/tickets") <= 4000 // 100 + 3


def test_parallel_resources_in_windows_reuse_their_connections(sandbox_factory, tmp_path, caplog):
    # seven resources at once, each in up to 16 windows with 20 ms answers: every request in
    # flight finds room in the connection pool when it is done, so none is closed and opened
    # again (urllib3 warns when it has to close one)
    server = sandbox_factory(seed=1, size=4000, shape="desk", latency_ms=20)
    credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
    pipeline = make_pipeline(tmp_path)
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        pipeline.run(support_api(base_url=server.url, credentials=credentials))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    assert "Connection pool is full" not in caplog.text
