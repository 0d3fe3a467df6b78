"""The settle margin: no run reads, or remembers, rows updated in the last `settle_seconds`.

Database-backed APIs stamp `updated_at` when a change starts and show the change when its
transaction commits, a moment later (or later still on a read replica). A run that reads a
newer row first and moves its cursor past an older stamp that is still invisible never asks
for that stamp again: the row is lost for good. Concurrent time windows widen the gap (a later
window may read newer rows while an earlier one has passed the stamp).

So every walk stops at `bound = now - settle_seconds` (whole seconds): on the server where the
endpoint has an "updated before" parameter, and on the client in any case, before dlt's
incremental step sees the rows, so rows at or past the bound are neither loaded nor
remembered. The cursor kept in state is then always below the bound, and the next run reads
what was stamped after it, late rows included, as long as changes become visible within
`settle_seconds` of their stamp.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dlt.common import jsonpath

logger = logging.getLogger(__name__)

_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
"""Text cursors are timestamps when they start with an ISO date (`2024-01-31...`)."""

_EPOCH_MS_FROM: Final = 100_000_000_000
"""Epoch numbers from here on are milliseconds (1e11 seconds is the year 5138)."""


def utc_now() -> datetime:
    """The current time, aware, in UTC. Tests patch this to move time by hand.

    Returns:
        Now.
    """
    return datetime.now(UTC)


@dataclass(frozen=True)
class Settle:
    """How one resource keeps its settle margin.

    Attributes:
        seconds: The margin; rows updated this recently are left for the next run.
        before_param: Query parameter of the exclusive upper bound ("updated before"); None
            when the endpoint has none (the bound is then kept on the client only).
        epoch_numbers: Numeric cursor values are epoch seconds (or milliseconds) and are
            bounded too. Only when `settle_seconds` is set on the endpoint itself: by default a
            number could be any sequence (an id), which no time bound applies to.
    """

    seconds: int
    before_param: str | None = None
    epoch_numbers: bool = False


def settle_bound(seconds: int, now: datetime | None = None) -> datetime:
    """`now - seconds`, down to the whole second (API bounds are whole seconds).

    Args:
        seconds: The settle margin.
        now: The current time; `utc_now()` when None.

    Returns:
        The exclusive upper bound of what a run may read.
    """
    moment = (now or utc_now()) - timedelta(seconds=seconds)
    return datetime.fromtimestamp(math.floor(moment.timestamp()), UTC)


def cursor_instant(value: Any, epoch_numbers: bool) -> datetime | None:
    """A cursor value as an aware datetime, when it is a timestamp; else None.

    Args:
        value: ISO-8601 text, a datetime, or (with `epoch_numbers`) epoch seconds or ms.
        epoch_numbers: Take numbers as epoch seconds (milliseconds from 1e11).

    Returns:
        The instant (naive values taken as UTC), or None for anything else.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        if not _ISO_DATE.match(value):
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if epoch_numbers and isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_FROM else value
        return datetime.fromtimestamp(seconds, UTC)
    return None


def bound_param(bound: datetime, sample: Any) -> Any:
    """The bound as the API's cursor values are written (the start value is the sample).

    Args:
        bound: The settle bound.
        sample: A cursor value in the API's form: the value sent as "updated since".

    Returns:
        An aware datetime for a datetime sample, epoch seconds (or ms) for a number, else
        ISO-8601 text in UTC (`+00:00` when the sample writes it so, `Z` otherwise).
    """
    if isinstance(sample, datetime):
        return bound
    if isinstance(sample, int | float) and not isinstance(sample, bool):
        seconds = int(bound.timestamp())
        return seconds * 1000 if abs(sample) >= _EPOCH_MS_FROM else seconds
    text = bound.strftime("%Y-%m-%dT%H:%M:%S")
    return text + ("+00:00" if isinstance(sample, str) and sample.endswith("+00:00") else "Z")


def cursor_getter(cursor_path: str) -> Callable[[Any], Any]:
    """Reads a record's cursor value: a top-level field, or a JSON path.

    Args:
        cursor_path: The incremental's cursor path.

    Returns:
        A function from a record to its cursor value (None when absent).
    """
    if cursor_path.isidentifier():
        return lambda record: record.get(cursor_path) if isinstance(record, dict) else None
    compiled = jsonpath.compile_path(cursor_path)

    def find(record: Any) -> Any:
        values = jsonpath.find_values(compiled, record)
        return values[0] if values else None

    return find


@dataclass
class SettleFilter:
    """Drops the records at or past the bound from pages, and counts them.

    Attributes:
        bound: The exclusive upper bound.
        cursor: Reads a record's cursor value.
        epoch_numbers: See `Settle.epoch_numbers`.
        held_back: Records dropped so far (left for the next run).
    """

    bound: datetime
    cursor: Callable[[Any], Any]
    epoch_numbers: bool = False
    held_back: int = 0

    def keep(self, records: list[Any]) -> list[Any]:
        """The records below the bound (and those without a timestamp), in order.

        Args:
            records: One page.

        Returns:
            The records to hand on.
        """
        kept = []
        for record in records:
            instant = cursor_instant(self.cursor(record), self.epoch_numbers)
            if instant is None or instant < self.bound:
                kept.append(record)
        self.held_back += len(records) - len(kept)
        return kept

    def pages(self, pages: Iterable[list[Any]]) -> Iterator[list[Any]]:
        """Filters every page; pages left empty are still handed on (they end walks).

        Args:
            pages: Lists of records.

        Yields:
            The filtered lists.
        """
        for page in pages:
            yield self.keep(page) if isinstance(page, list) else page


def report_held_back(resource: str, held_back: int, bound: datetime) -> None:
    """Logs how many rows were left for the next run, when there were any.

    Args:
        resource: The resource name.
        held_back: Rows dropped at or past the bound.
        bound: The bound.
    """
    if held_back:
        logger.info(
            "%s: %d rows updated at or after %s (the settle margin) are left for the next run",
            resource,
            held_back,
            bound.isoformat(),
        )
