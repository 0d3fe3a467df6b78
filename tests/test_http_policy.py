"""Unit tests of the HTTP policy pieces that the end-to-end tests cannot pin down exactly."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.utils import formatdate
from types import SimpleNamespace
from typing import cast

import pytest
import requests
from dlt.sources.helpers.requests import Client
from requests import PreparedRequest, Request, Response
from requests.adapters import HTTPAdapter

from sources.support_api import http_policy
from sources.support_api.http_policy import (
    PacedAdapter,
    PacedSession,
    RateLimitPacer,
    RetryPolicy,
    SessionPool,
)
from sources.support_api.paginators import OffsetLimitPaginator, PageNumberSizePaginator
from tests.sandbox import FakeClock


def response(status: int = 200, headers: dict[str, str] | None = None) -> Response:
    result = Response()
    result.status_code = status
    result.headers.update(headers or {})
    return result


def pacer_with_clock() -> tuple[RateLimitPacer, FakeClock, list[float]]:
    clock = FakeClock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    return RateLimitPacer(clock=clock, sleep=sleep, max_wait=60), clock, sleeps


def limits(remaining: int, reset: float, limit: int | None = None) -> dict[str, str]:
    headers = {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}
    if limit is not None:
        headers["X-RateLimit-Limit"] = str(limit)
    return headers


def test_pacer_waits_for_the_window_when_the_budget_is_spent():
    pacer, _, sleeps = pacer_with_clock()
    pacer.observe(response(headers=limits(3, 5)))
    pacer.acquire()
    pacer.release()
    assert sleeps == []
    pacer.observe(response(headers=limits(0, 2)))
    pacer.acquire()
    pacer.release()
    pacer.acquire()  # the window is over after the first wait
    assert sleeps == [2]


def test_pacer_pauses_when_requests_in_flight_would_spend_the_rest_of_the_budget():
    pacer, _, sleeps = pacer_with_clock()
    for _ in range(4):
        pacer.acquire()
    # 3 left, 4 requests out: waiting only at 0 would let the last ones bounce off 429
    pacer.observe(response(headers=limits(3, 2)))
    pacer.acquire()
    assert sleeps == [2]
    for _ in range(5):
        pacer.release()
    pacer.observe(response(headers=limits(3, 2)))
    for _ in range(3):
        pacer.acquire()
    assert sleeps == [2]  # three left: three go out without a pause
    pacer.acquire()
    assert sleeps == [2, 2]


def test_pacer_resumes_at_the_earliest_reset_seen_in_the_window():
    pacer, clock, sleeps = pacer_with_clock()
    # resets are rounded up to whole seconds: the first response of the window (1 s left)
    # bounds the turn of the window, the later ones (0.4 s left, still "1") do not
    pacer.observe(response(headers=limits(19, 1, limit=20)))
    clock.advance(0.6)
    pacer.observe(response(headers=limits(0, 1, limit=20)))
    pacer.acquire()
    assert sleeps == [pytest.approx(0.4)]


def test_after_the_turn_one_request_probes_the_budget_before_the_others():
    pacer, _, sleeps = pacer_with_clock()
    pacer.observe(response(headers=limits(0, 1, limit=20)))
    pacer.acquire()  # waits for the turn of the window: this one is the probe
    assert sleeps == [1]
    # requests sent late in the last window may be counted in this one: the others wait for
    # the probe's answer (a real wait ends when it arrives)
    pacer.acquire()
    assert len(sleeps) == 2
    pacer.release()
    pacer.release()
    pacer.observe(response(headers=limits(15, 1, limit=20)))
    for _ in range(15):
        pacer.acquire()
    assert len(sleeps) == 2
    pacer.acquire()
    assert len(sleeps) == 3


def test_pacer_follows_a_server_window_that_turned_before_the_reset_it_expected():
    pacer, clock, sleeps = pacer_with_clock()
    pacer.observe(response(headers=limits(1, 5, limit=20)))
    clock.advance(0.5)
    fresh = response(headers=limits(18, 1, limit=20))
    fresh.elapsed = timedelta(seconds=0.1)  # sent after the answer that left 1
    pacer.observe(fresh)
    for _ in range(18):
        pacer.acquire()
    assert sleeps == []


def test_an_answer_overtaken_by_a_later_one_is_not_a_new_window():
    pacer, clock, sleeps = pacer_with_clock()
    pacer.observe(response(headers=limits(5, 5, limit=20)))
    clock.advance(0.5)
    overtaken = response(headers=limits(7, 5, limit=20))
    overtaken.elapsed = timedelta(seconds=1)  # sent before the answer that left 5
    pacer.observe(overtaken)
    for _ in range(5):
        pacer.acquire()
    assert sleeps == []
    pacer.acquire()
    assert len(sleeps) == 1


def test_an_answer_read_late_is_dated_by_its_request_not_by_its_elapsed_time():
    pacer, clock, sleeps = pacer_with_clock()
    pacer.observe(response(headers=limits(10, 5, limit=20)))
    # A and B go out together; the server counts A (5 left), then B (4 left)
    read_a, read_b = threading.Event(), threading.Event()

    def send(remaining: int, read: threading.Event) -> None:
        pacer.acquire()
        read.wait()
        answer = response(headers=limits(remaining, 5, limit=20))
        answer.elapsed = timedelta(seconds=0.01)  # A's thread reads its answer late
        pacer.observe(answer)
        pacer.release()

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(send, 5, read_a)
        b = pool.submit(send, 4, read_b)
        deadline = time.monotonic() + 10
        while pacer._in_flight < 2:  # both sent before either answer is read
            assert time.monotonic() < deadline, "both requests should be let out at once"
            time.sleep(0.001)
        clock.advance(0.05)
        read_b.set()
        b.result()
        clock.advance(0.15)
        read_a.set()
        a.result()
    # A was sent before B's answer: its higher count is the same window, not a new one
    for _ in range(4):
        pacer.acquire()
    assert sleeps == []
    pacer.acquire()
    assert len(sleeps) == 1


def test_pacer_does_not_charge_a_late_answer_from_the_last_window_to_the_new_one():
    pacer, clock, sleeps = pacer_with_clock()
    pacer.observe(response(headers=limits(0, 1, limit=20)))
    pacer.acquire()  # waits for the turn of the window
    assert sleeps == [1]
    pacer.release()
    late = response(headers=limits(0, 1, limit=20))
    late.elapsed = timedelta(seconds=1.5)  # sent before the window turned over
    clock.advance(0.5)
    pacer.observe(late)
    pacer.acquire()
    assert sleeps == [1]
    current = response(headers=limits(0, 1, limit=20))
    pacer.observe(current)
    pacer.acquire()
    assert sleeps == [1, 1]


def test_pacer_wakes_a_waiting_request_as_soon_as_one_in_flight_is_answered():
    pacer = RateLimitPacer(max_wait=60)
    pacer.acquire()
    pacer.observe(response(headers=limits(1, 60)))  # one left, one out: the next one waits
    sent = threading.Event()

    def send_next() -> None:
        pacer.acquire()
        sent.set()

    waiting = threading.Thread(target=send_next, daemon=True)
    waiting.start()
    assert not sent.wait(0.2)
    pacer.release()
    # woken by the release, not after the 60 s the window has left
    assert sent.wait(30)


def test_pacer_honours_retry_after_on_429_and_caps_it():
    pacer, _, sleeps = pacer_with_clock()
    pacer.observe(response(429, headers={"Retry-After": "7"}))
    pacer.acquire()
    pacer.observe(response(429, headers={"Retry-After": "10000"}))
    pacer.acquire()
    assert sleeps == [7, 60]


def test_pacer_reads_retry_after_as_an_http_date_or_decimal_seconds(monkeypatch):
    # an HTTP date is read against http_policy's clock for dates (urllib3's, `time.time`)
    now = 1_700_000_000.0
    monkeypatch.setattr("urllib3.util.retry.time.time", lambda: now)
    pacer, _, sleeps = pacer_with_clock()
    pacer.observe(response(429, headers={"Retry-After": formatdate(now + 12, usegmt=True)}))
    pacer.acquire()
    pacer.observe(response(429, headers={"Retry-After": "1.5"}))
    pacer.acquire()
    pacer.observe(response(429, headers={"Retry-After": "soon"}))  # unreadable: no wait
    pacer.acquire()
    assert sleeps == [12, 1.5]


def test_pacer_reads_an_epoch_reset(monkeypatch):
    # the epoch is read from http_policy's `time.time`, fixed here: the wait is exact
    monkeypatch.setattr(http_policy, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    pacer, _, sleeps = pacer_with_clock()
    reset = str(1_700_000_000 + 30)
    pacer.observe(response(headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}))
    pacer.acquire()
    assert sleeps == [30]


def test_pacer_budget_is_what_is_left_beyond_the_requests_in_flight():
    pacer, clock, _ = pacer_with_clock()
    assert pacer.budget() is None  # no rate-limit headers seen: no limit known
    pacer.observe(response(headers=limits(5, 2)))
    assert pacer.budget() == (5, 2)
    pacer.acquire()
    clock.advance(0.5)
    assert pacer.budget() == (4, 1.5)
    pacer.observe(response(headers=limits(4, 2)))
    pacer.release()
    assert pacer.budget() == (4, 1.5)  # the earliest reset seen holds


def paced_session(
    pacer: RateLimitPacer, answers: list[Response], monkeypatch: pytest.MonkeyPatch
) -> tuple[PacedSession, list[PreparedRequest]]:
    """A paced session retrying 429s and 503s at once (dlt's own waits off), whose transport
    hands out `answers` in turn."""
    sent: list[PreparedRequest] = []
    pending = iter(answers)

    def answer(
        _adapter: HTTPAdapter, request: PreparedRequest, *_: object, **__: object
    ) -> Response:
        sent.append(request)
        reply = next(pending)
        reply.request, reply.url, reply._content = request, request.url or "", b"{}"
        return reply

    monkeypatch.setattr(HTTPAdapter, "send", answer)
    client = Client(
        raise_for_status=False,
        status_codes=(429, 503),
        request_max_attempts=3,
        request_backoff_factor=0,
        respect_retry_after_header=False,
    )
    return PacedSession(client, PacedAdapter(pacer), ThreadPoolExecutor(1)), sent


def test_a_retried_attempt_waits_for_the_rate_limit_window(monkeypatch):
    # the first attempt spends the window's budget and fails with a 503: dlt retries it at
    # once (no backoff), and the retry still waits for the window to reset
    pacer, clock, sleeps = pacer_with_clock()
    session, sent = paced_session(
        pacer,
        [response(503, limits(0, 5)), response(200, limits(19, 1)), response(200, limits(18, 1))],
        monkeypatch,
    )
    start = clock()
    reply = session.send(session.prepare_request(Request("GET", "http://api.example.com/v1/a")))
    assert reply.status_code == 200
    assert [request.url for request in sent] == ["http://api.example.com/v1/a"] * 2
    assert sleeps == [5]
    assert clock() - start == 5
    # the answer to the retry is the budget now: 19 left, nothing waits
    session.send(session.prepare_request(Request("GET", "http://api.example.com/v1/b")))
    assert sleeps == [5]


def test_a_429_holds_its_retry_in_the_pacer_for_retry_after(monkeypatch):
    pacer, _, sleeps = pacer_with_clock()
    too_many = response(429, {"Retry-After": "3"})
    session, sent = paced_session(pacer, [too_many, response(200), response(200)], monkeypatch)
    session.send(session.prepare_request(Request("GET", "http://api.example.com/v1/a")))
    # the retry of the 429 waited for its `Retry-After` in the pacer (dlt's own wait is off)
    assert sleeps == [3]
    # its wait is over: the next request goes at once
    session.send(session.prepare_request(Request("GET", "http://api.example.com/v1/b")))
    assert sleeps == [3]
    assert len(sent) == 3


class SteppedStopwatch:
    """Stands in for `time` in `http_policy`: `monotonic` reads a clock that a test moves.

    The first reading is the moment `send` starts waiting for a page fetched ahead: it sets
    `waiting`, so the page's answer can be held until then.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.waiting = threading.Event()

    def monotonic(self) -> float:
        reading = self.now
        self.waiting.set()
        return reading

    def time(self) -> float:
        return time.time()


def test_waited_is_how_long_send_waited_for_a_page_fetched_ahead(monkeypatch):
    pacer, _, _ = pacer_with_clock()
    session, _ = paced_session(pacer, [response(200), response(200)], monkeypatch)
    stopwatch = SteppedStopwatch()
    monkeypatch.setattr(http_policy, "time", stopwatch)
    answer = HTTPAdapter.send

    def late_answer(adapter: HTTPAdapter, request: PreparedRequest, *args, **kwargs) -> Response:
        # held until the loop is waiting for it, then answered 50 ms (of the stopwatch) later
        assert stopwatch.waiting.wait(5)
        stopwatch.now += 0.05
        return answer(adapter, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", late_answer)
    ahead = session.prefetch(Request("GET", "http://api.example.com/v1/a", params={"page": 2}))
    assert ahead is not None
    session.send(session.prepare_request(Request("GET", ahead)))
    assert session.waited() == pytest.approx(0.05)
    # a page not fetched ahead is sent at once: nothing waited for
    session.send(session.prepare_request(Request("GET", "http://api.example.com/v1/c")))
    assert session.waited() == 0.0


class RecordingSession:
    """Stands in for `PacedSession`: records what a walk fetches ahead.

    `wait` is how long the loop waited for each page fetched ahead.
    """

    def __init__(self) -> None:
        self.prefetched: list[dict] = []
        self.discarded: list[str] = []
        self.wait = 0.0
        self.pacer = RateLimitPacer()

    def prefetch(self, request: Request) -> str:
        self.prefetched.append(dict(request.params))
        return f"url-{len(self.prefetched)}"

    def waited(self) -> float:
        return self.wait

    def discard(self, urls: list[str]) -> None:
        self.discarded.extend(urls)


def page(rows: int) -> list[dict]:
    return [{"id": i} for i in range(rows)]


def offset_walk(depth: int) -> tuple[OffsetLimitPaginator, RecordingSession, Request]:
    """An offset walk of pages of 10 that fetches at most `depth` pages ahead, started."""
    paginator = OffsetLimitPaginator(limit=10, prefetch=depth)
    session = RecordingSession()
    paginator.prefetch.session = cast("PacedSession", session)
    request = Request("GET", "http://127.0.0.1/v1/tickets", params={})
    paginator.init_request(request)
    return paginator, session, request


def next_page(paginator: OffsetLimitPaginator, request: Request, rows: int = 10) -> None:
    paginator.update_state(response(), page(rows))
    paginator.update_request(request)


def test_offset_walk_fetches_the_next_pages_ahead_after_a_full_page_and_drops_the_rest():
    paginator, session, request = offset_walk(depth=3)
    assert session.prefetched == [], "nothing is fetched ahead of the first page"

    next_page(paginator, request)
    assert [p["offset"] for p in session.prefetched] == [10, 20]

    next_page(paginator, request)  # offset 10 had come back: no further ahead
    # each page is asked of the session once: preparing a request costs about 0.2 ms
    assert [p["offset"] for p in session.prefetched] == [10, 20, 30]

    next_page(paginator, request, rows=4)  # short page: the walk ends
    assert not paginator.has_next_page
    assert session.discarded == [f"url-{i}" for i in range(1, 4)]

    paginator.init_request(request)  # a new walk (the next parent of a child resource)
    next_page(paginator, request)
    assert [p["offset"] for p in session.prefetched[3:]] == [10, 20]


def read_pages(paginator: OffsetLimitPaginator, request: Request, pages: int) -> int:
    """Reads `pages` full pages; returns how many pages the walk then fetches ahead."""
    for _ in range(pages):
        next_page(paginator, request)
    return paginator.prefetch.ahead


def test_a_walk_that_waits_for_its_pages_fetches_further_ahead_within_its_limits():
    paginator, session, request = offset_walk(depth=5)
    session.wait = 0.02  # the loop waits 20 ms for every page fetched ahead
    # at most one page ahead per 4 read, 2 at least, and never beyond the depth
    assert read_pages(paginator, request, 8) == 2
    assert read_pages(paginator, request, 8) == 4
    assert read_pages(paginator, request, 16) == 5
    # every page asked for once, in order
    assert [p["offset"] for p in session.prefetched] == list(range(10, 370, 10))
    paginator.init_request(request)
    assert paginator.prefetch.ahead == 2, "a new walk starts near again"
    assert read_pages(paginator, request, 8) == 2


def test_a_walk_that_does_not_wait_for_its_pages_fetches_no_further_ahead():
    paginator, session, request = offset_walk(depth=5)
    session.wait = 0.008  # handed over about as fast as the loop takes them
    assert read_pages(paginator, request, 48) == 2


def test_a_walk_held_back_by_the_rate_limit_fetches_no_further_ahead():
    paginator, session, request = offset_walk(depth=5)
    session.wait = 0.02
    session.pacer.observe(response(headers=limits(0, 5)))  # the budget is spent
    assert read_pages(paginator, request, 48) == 2


def test_page_number_walk_fetches_ahead_with_the_page_size():
    paginator = PageNumberSizePaginator(page_size=5, prefetch=2)
    session = RecordingSession()
    paginator.prefetch.session = cast("PacedSession", session)
    request = Request("GET", "http://127.0.0.1/v1/tickets", params={})
    paginator.init_request(request)
    paginator.update_state(response(), page(5))
    paginator.update_request(request)
    assert session.prefetched == [{"page": 2, "per_page": 5}, {"page": 3, "per_page": 5}]


def test_no_fetching_ahead_when_the_first_page_is_short():
    paginator, session, request = offset_walk(depth=3)
    next_page(paginator, request, rows=3)
    assert session.prefetched == []


def test_environment_settings_are_read_once_per_host_and_match_requests(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.skip.example")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    pool = SessionPool()
    paced = cast("PacedSession", pool.session_for(RetryPolicy()))
    plain = requests.Session()
    for url in ("http://api.example.com/v1/tickets?cursor=1", "http://api.skip.example/v1/a"):
        expected = plain.merge_environment_settings(url, {}, None, None, None)
        assert paced.merge_environment_settings(url, {}, None, None, None) == expected
    proxied = paced.merge_environment_settings(
        "http://api.example.com/v1/tickets?cursor=1", {}, None, None, None
    )
    assert proxied["proxies"]["http"] == "http://proxy.internal:3128"
    assert (
        "http"
        not in paced.merge_environment_settings(
            "http://api.skip.example/v1/b", {}, None, None, None
        )["proxies"]
    )

    # read once: a later change of the environment is not seen for a host already asked about
    monkeypatch.setenv("HTTP_PROXY", "http://other.internal:3128")
    settings = paced.merge_environment_settings("http://api.example.com/v1/x", {}, None, None, None)
    assert settings["proxies"]["http"] == "http://proxy.internal:3128"
    settings["proxies"]["https"] = "changed by a caller"
    again = paced.merge_environment_settings("http://api.example.com/v1/y", {}, None, None, None)
    assert "https" not in again["proxies"]
    # explicit settings are merged by requests itself
    url = "http://api.example.com/"
    explicit = paced.merge_environment_settings(url, {}, None, verify=False, cert=None)
    assert explicit["verify"] is False
