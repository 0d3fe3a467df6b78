"""Reads a cursor-paged endpoint in concurrent time windows of its updated timestamp.

A cursor paginator can only fetch one page after another: each page names the next. When the
endpoint also filters on the updated timestamp (`updated_since` inclusive, `updated_before`
exclusive), the range can be cut into windows that are walked at the same time, each with its
own cursor. Nothing about the data's spread over time is known in advance, so the windows are
made as the walk goes (work stealing):

1. One walk starts over the whole range, with exactly the request a plain run would send. When
   its first page is the last one (an incremental run with little new), that was the only
   request.
2. Otherwise, while fewer walks run than allowed, the consumer had to wait for the page it
   took (`SPLIT_AFTER_WAIT_S` or longer) and no page is waiting to be taken (the walks, not the
   consumer, are the bottleneck), the walk with the most pages left is split: it stops at the
   midpoint between the last timestamp it has seen and its upper bound, and a new walk takes
   the rest. Empty windows end after one request; busy ones are split again. On a fast API
   the consumer is the bottleneck and few walks run; with latency, more do.
   A walk's pages left are its time left over the time its last full page spanned; one with
   fewer than `MIN_SPLIT_PAGES` left is not split (each half would hold less than a page,
   and every cut costs a request), so an incremental run over a few pages of changes costs
   about those pages, not one request per walk. Walks that have handed over rows are cut
   first (the cuts stay near rows seen); then walks that have not answered yet, at the
   density of the walk they came from, so the range is cut into even windows at once.
3. On a rate-limited API the limit can be the bottleneck instead: no walk is added once the
   walks running would spend the budget left before the limit's window resets (looking at
   most `RATE_HORIZON_S` ahead), at the pages per second each walk has managed so far. More
   walks would not go faster there, only cut more windows, each ending in a short page.

Rows are never lost or repeated: a walk keeps only rows below its current upper bound, and the
split point is always later than every row the walk has already handed over (the bound and
the filter change under one lock). A walk stops early only while its pages came in timestamp
order; if an API ever returns rows out of order, that walk reads its window to the end and no
walk is split again.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dlt.common.time import ensure_pendulum_datetime

from .settle import bound_param

FetchPages = Callable[[dict[str, Any]], Iterator[tuple[list[Any], bool]]]
"""Walks one window: given the request params, yields `(records, more pages follow)`."""

MIN_SPLIT_SECONDS: Final = 2
"""A walk with less time than this left is not split (bounds are whole seconds)."""

MIN_SPLIT_PAGES: Final = 2.0
"""A walk with fewer pages left than this (at the density of its last full page) is not
split: each half would hold less than a page. Measured on rows spread evenly over the range
(`tests/test_windows.py`'s fake API at 20 ms a request, 16 walks allowed, medians of 7),
with the cuts of walks that have not answered yet: 2 pages took 2 requests (13 when every
walk was cut down to `MIN_SPLIT_SECONDS`), 6 pages 9 (17), 10 pages 17 in 0.06 s (29 in
0.12 s), 80 pages 86 in 0.19 s (92 in 0.23 s)."""

_PUT_TIMEOUT_S: Final = 0.1

RATE_HORIZON_S: Final = 10.0
"""How far ahead a rate-limit budget is weighed against the walks' demand: a budget that
lasts this long at the walks' pace leaves room for another walk, however long its window."""

SPLIT_AFTER_WAIT_S: Final = 0.005
"""A walk is added only after the consumer waited this long for a page. Without latency a
page takes a few milliseconds to fetch, and walks added for that short a wait only cut more
windows: on 50k sandbox tickets (10 interleaved runs), adding walks whenever no page was
waiting cost 524 requests and 2.29 s of CPU to extract; from a 5 ms wait, 515 requests and
2.15 s, as fast or faster (at 20 ms of latency: 543 against 531 requests). The first page
still takes long enough for the walks to grow at once. Shorter than the 10 ms after which a
walk fetches further ahead (`paginators.GROW_AFTER_WAIT_S`): at 10 ms here, the walks left
the CPU idle (extract 3.10 s against 3.04 s)."""

RateBudget = Callable[[], tuple[float, float] | None]
"""Returns the requests a rate limit still allows and the seconds until it resets (None: no
limit known), e.g. `http_policy.RateLimitPacer.budget`."""


@dataclass(frozen=True)
class WindowPlan:
    """How an endpoint is read in windows.

    Attributes:
        cursor_field: Top-level field holding each record's updated timestamp.
        since_param: Query parameter of the inclusive lower bound.
        before_param: Query parameter of the exclusive upper bound.
        concurrency: Most walks running at once; 1 reads the endpoint in one walk.
        arrow: Hand batches of pages to dlt as arrow tables where that is faithful
            (`arrow_pages`), when the destination loads parquet.
    """

    cursor_field: str
    since_param: str
    before_param: str
    concurrency: int
    arrow: bool = True


def parse_cursor(value: Any) -> datetime | None:
    """A record's cursor value as an aware datetime; None when it is not a timestamp.

    Args:
        value: ISO-8601 text, epoch seconds or a datetime.

    Returns:
        The timestamp (naive values are taken as UTC), or None.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = ensure_pendulum_datetime(value)
            except (ValueError, TypeError):
                return None
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass
class _Walk:
    """One window being read. Mutable fields change under the walker's lock."""

    params: dict[str, Any]
    hi: datetime | None
    lo: datetime | None = None
    """Lower bound of a walk made by a cut, where it is cut again before it answers (the
    first walk is never cut before its first page shows the density)."""
    progress: datetime | None = None
    span: float | None = None
    """Seconds between the first and the last timestamp of the walk's last full page."""
    ordered: bool = True
    has_more: bool = True
    done: bool = False


@dataclass
class _Walker:
    """Runs the walks of one endpoint and hands their pages to the caller's thread."""

    fetch: FetchPages
    plan: WindowPlan
    now: datetime
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue[tuple[str, Any]] = field(init=False)
    walks: list[_Walk] = field(default_factory=list)
    splittable: bool = True
    sample: Any = None

    def __post_init__(self) -> None:
        self.events = queue.Queue(maxsize=2 * self.plan.concurrency)

    def _put(self, event: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.events.put(event, timeout=_PUT_TIMEOUT_S)
            except queue.Full:
                continue
            return True
        return False

    def run(self, walk: _Walk) -> None:
        """Reads one window to its end (or its current upper bound), in a pool thread."""
        try:
            # the paginator writes its cursor into the params it is given: pass a copy
            for records, more in self.fetch(dict(walk.params)):
                if self.stop.is_set():
                    return
                kept, finished = self._accept(walk, records, more)
                if (kept or not finished) and not self._put(("page", kept)):
                    return
                if finished:
                    break
        except BaseException as ex:  # noqa: BLE001 - handed to the caller's thread and raised there
            self._put(("error", ex))
            return
        self._put(("done", None))

    def _accept(self, walk: _Walk, records: list[Any], more: bool) -> tuple[list[Any], bool]:
        """Keeps the rows of a page below the walk's bound; says whether the walk is over."""
        field_name = self.plan.cursor_field
        with self.lock:
            hi = walk.hi
            kept = []
            previous = walk.progress
            earliest: datetime | None = None
            for record in records:
                raw = record.get(field_name) if isinstance(record, dict) else None
                cursor = parse_cursor(raw)
                if cursor is None:
                    # no timestamp to window on: keep it here and stop splitting
                    self.splittable = False
                    walk.ordered = False
                    kept.append(record)
                    continue
                if self.sample is None:
                    self.sample = raw
                if previous is not None and cursor < previous:
                    walk.ordered = False
                    self.splittable = False
                if earliest is None:
                    earliest = cursor
                previous = cursor if previous is None else max(previous, cursor)
                if hi is None or cursor < hi:
                    kept.append(record)
            walk.progress = previous
            if more and earliest is not None and previous is not None:
                # a full page: how much time a page of this walk's rows covers
                walk.span = (previous - earliest).total_seconds()
            walk.has_more = more
            past_bound = hi is not None and previous is not None and previous >= hi
            finished = not more or (walk.ordered and past_bound)
            walk.done = finished
        return kept, finished

    def split(self) -> _Walk | None:
        """Cuts a running walk in two; returns the new walk.

        The walk cut is the one with the most pages left, estimated from the time its last
        full page spanned (a page within one second counts as unbounded; ties go to the most
        time left). Walks that have handed over rows come first: the cuts stay near the rows
        seen, where the data is known to be. Only when none of them has `MIN_SPLIT_PAGES`
        left is a walk that has not answered yet cut, at the density of the walk it was cut
        from.
        """
        with self.lock:
            if not self.splittable or self.sample is None:
                return None
            best: tuple[tuple[bool, float, float], _Walk, datetime] | None = None
            for walk in self.walks:
                if walk.done or not walk.has_more or not walk.ordered:
                    continue
                started = walk.progress is not None
                start = walk.progress if walk.progress is not None else walk.lo
                if start is None or (not started and walk.span is None):
                    continue
                left = ((walk.hi or self.now) - start).total_seconds()
                pages_left = left / walk.span if walk.span else math.inf
                if left < MIN_SPLIT_SECONDS or pages_left < MIN_SPLIT_PAGES:
                    continue
                rank = (started, pages_left, left)
                if best is None or rank > best[0]:
                    best = (rank, walk, start)
            if best is None:
                return None
            (_, _, left), walk, start = best
            mid = datetime.fromtimestamp(
                math.ceil((start + timedelta(seconds=left / 2)).timestamp()), UTC
            )
            if not start < mid < (walk.hi or self.now):
                return None
            params = dict(walk.params)
            params[self.plan.since_param] = bound_param(mid, self.sample)
            if walk.hi is not None:
                params[self.plan.before_param] = bound_param(walk.hi, self.sample)
            new = _Walk(params=params, hi=walk.hi, lo=mid, span=walk.span)
            walk.hi = mid
            self.walks.append(new)
            return new


def _budget_allows_another(
    budget: RateBudget | None, running: int, pages: int, elapsed: float
) -> bool:
    """Whether one more walk would still leave the rate limit's budget unspent.

    The walks' demand is their pages per second so far (each walk's share alike) times the
    seconds until the budget resets, at most `RATE_HORIZON_S`.
    """
    left = budget() if budget is not None else None
    if left is None:
        return True
    remaining, seconds = left
    per_walk = pages / max(elapsed, 1e-3) / max(running, 1)
    return (running + 1) * per_walk * min(seconds, RATE_HORIZON_S) < remaining


def walk_in_windows(
    fetch: FetchPages,
    plan: WindowPlan,
    params: Mapping[str, Any],
    now: datetime | None = None,
    budget: RateBudget | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[list[Any], None, None]:
    """Yields every record of the range in `params`, in pages, read in concurrent windows.

    Pages come in the order they arrive, not in timestamp order.

    Args:
        fetch: Walks one window given its request params.
        plan: Cursor field, bound parameters and how many walks may run at once.
        params: Params of the first request, bounds included (as the incremental set them).
        now: Upper bound assumed for the open-ended window when splitting; the current time
            when None. Rows later than it are still read (the last window is open).
        budget: The rate limit's budget (None: no limit to weigh walks against).
        clock: Monotonic seconds, to measure the walks' pace and the consumer's waits.

    Yields:
        Lists of records; a page may be cut where a window ends.

    Raises:
        BaseException: Whatever a walk raised; the other walks are stopped first.
    """
    end = parse_cursor(params.get(plan.before_param)) if plan.before_param in params else None
    walker = _Walker(fetch=fetch, plan=plan, now=now or datetime.now(UTC))
    first = _Walk(params=dict(params), hi=end)
    walker.walks.append(first)
    running = 1
    # daemon threads: a walk blocked on a consumer that went away never holds up the exit
    began = clock()
    _start(walker, first, 0)
    started = 1
    pages = 0
    try:
        while running:
            asked = clock()
            kind, payload = walker.events.get()
            waited = clock() - asked
            if kind == "error":
                raise payload
            if kind == "done":
                running -= 1
            else:
                pages += 1
                if payload:
                    yield payload
            # another walk only while pages come slower than they are taken: with pages
            # waiting, or a page that was only a fetch away, the consumer is the bottleneck and
            # one more walk would only compete; and only while the rate limit, if any, would
            # not be the bottleneck instead
            while (
                running < plan.concurrency
                and waited >= SPLIT_AFTER_WAIT_S
                and walker.events.empty()
                and _budget_allows_another(budget, running, pages, clock() - began)
                and (new := walker.split()) is not None
            ):
                running += 1
                _start(walker, new, started)
                started += 1
    finally:
        walker.stop.set()


def _start(walker: _Walker, walk: _Walk, number: int) -> None:
    threading.Thread(
        target=walker.run, args=(walk,), name=f"support_api_window_{number}", daemon=True
    ).start()
