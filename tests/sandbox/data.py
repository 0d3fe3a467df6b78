"""Deterministic, lazily generated support-desk data for the loopback sandbox.

A `Dataset` never holds its base rows in memory. Every row is a pure function of
`(seed, table, index)`: its `id` is `index + 1` and its `updated_at` is computed arithmetically,
non-decreasing with the index, with runs of rows sharing the same second. That makes a
1,000,000-ticket dataset cost nothing to create and lets `Dataset.page` jump to any offset with
a few integer operations.

Mutations do not rewrite base rows. An updated base row is marked superseded (removed from the
base order) and re-appears in a small overlay, keyed by its new `updated_at`, which is always
later than every base timestamp. The ordered view of a table is therefore "base rows that are
not superseded" followed by "overlay rows sorted by (updated_at, id)".
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

Row = dict[str, Any]
"""One record as served by the API: a fresh dict the caller may modify."""

TimeBound = str | int | float | datetime | None
"""A filter bound: ISO-8601 text, epoch seconds, an aware or naive (UTC) datetime, or None."""

RowKey = tuple[int, int]
"""Sort key of a row in the ordered view: (updated_at as epoch seconds, id)."""

TABLES: Final[tuple[str, ...]] = (
    "tickets",
    "ticket_comments",
    "organizations",
    "agents",
    "groups",
    "brands",
    "customers",
)
"""Every table of the fake desk, in a stable order."""

START_EPOCH: Final = 1_704_067_200
"""2024-01-01T00:00:00Z: the `updated_at` of the earliest possible base row."""

_BLOCK_ROWS: Final = 4
_BLOCK_SECONDS: Final = 30
_TIE_THRESHOLD: Final = 160  # a byte below 160 (5 in 8) keeps the next row on the same second
_MASK64: Final = (1 << 64) - 1
_ROWS_PER_SECOND_ON_MUTATION: Final = 3

_T = TypeVar("_T")


def default_table_sizes(size: int) -> dict[str, int]:
    """Returns how many rows each table has for a dataset of `size` tickets.

    Args:
        size: Number of tickets.

    Returns:
        Row count by table name.
    """
    return {
        "tickets": size,
        "ticket_comments": 2 * size,
        "organizations": max(5, size // 10),
        "agents": max(5, size // 50),
        "groups": max(3, min(20, size // 100)),
        "brands": 3,
        "customers": max(5, size // 2),
    }


_MINUTE_PREFIXES: Final = tuple(
    f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60)
)
_SECOND_SUFFIXES: Final = tuple(f"{second:02d}Z" for second in range(60))
_DAY_PREFIXES: dict[int, str] = {}
_DAY_CACHE_LIMIT: Final = 100_000


def format_timestamp(epoch_seconds: int) -> str:
    """Formats epoch seconds the way the sandbox serves timestamps.

    About four times faster than `time.strftime`: the date part is cached per day and the
    time of day is assembled from precomputed pieces.

    Args:
        epoch_seconds: Seconds since the Unix epoch.

    Returns:
        ISO-8601 UTC text with second resolution, e.g. `2024-01-01T00:00:00Z`.
    """
    day, second_of_day = divmod(int(epoch_seconds), 86_400)
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        if len(_DAY_PREFIXES) >= _DAY_CACHE_LIMIT:
            _DAY_PREFIXES.clear()
        prefix = time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))
        _DAY_PREFIXES[day] = prefix
    minute, second = divmod(second_of_day, 60)
    return prefix + _MINUTE_PREFIXES[minute] + _SECOND_SUFFIXES[second]


def parse_timestamp(value: str | float | datetime) -> float:
    """Converts a filter bound to epoch seconds.

    Args:
        value: ISO-8601 text (a trailing `Z` or an offset; naive means UTC), epoch seconds,
            or a datetime (naive means UTC).

    Returns:
        Epoch seconds, possibly fractional.

    Raises:
        ValueError: If the text is not an ISO-8601 timestamp.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        return float(value)
    else:
        text = value.strip()
        if not text:
            raise ValueError("empty timestamp")
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bound_seconds(value: TimeBound) -> int | None:
    """Rounds a filter bound up to whole seconds (rows have second resolution).

    `updated_at >= 10.5` and `updated_at < 10.5` select the same rows as `>= 11` and `< 11`.
    """
    if value is None:
        return None
    return math.ceil(parse_timestamp(value))


def _mix64(value: int) -> int:
    """SplitMix64 finalizer: a fast, well-spread 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _row_bits(key: bytes, index: int) -> bytes:
    """Returns 64 pseudo-random bytes for one row: a BLAKE2b digest keyed by seed and table.

    Generators read fields straight from these bytes at fixed offsets, which is several times
    faster than drawing from a `random.Random` per row.
    """
    return hashlib.blake2b(index.to_bytes(8, "little"), digest_size=64, key=key).digest()


def _u24(bits: bytes, at: int) -> int:
    """Reads three bytes of a row digest as an unsigned integer below 2**24."""
    return bits[at] | bits[at + 1] << 8 | bits[at + 2] << 16


def _chance(byte: int, percent: int) -> bool:
    """Returns True for `percent` of the 256 possible byte values."""
    return byte * 100 < percent * 256


def _pick(choices: Sequence[_T], byte: int) -> _T:
    """Picks an element of `choices` with one byte."""
    return choices[byte % len(choices)]


# --- vocabulary -------------------------------------------------------------------------------

_FIRST_NAMES: Final = (
    "Ada", "Bram", "Chiara", "Dmitri", "Esme", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Keiko", "Lars", "Mina", "Nadia", "Oskar", "Priya", "Quinn", "Rafael", "Sofia", "Tomas",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zofia",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Abara", "Berg", "Castillo", "Dubois", "Eriksen", "Fontaine", "Gallo", "Horvat", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist",
    "Rossi", "Sato", "Tanaka", "Urban", "Varga", "Weber", "Yilmaz", "Zeller",
)  # fmt: skip
_COMPANY_WORDS: Final = (
    "Acme", "Birch", "Cobalt", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
    "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchard", "Pioneer", "Quartz", "Ridge", "Summit",
    "Tundra", "Umber", "Vertex", "Willow", "Zenith",
)  # fmt: skip
_COMPANY_SUFFIXES: Final = ("Labs", "Logistics", "Foods", "Health", "Systems", "Retail", "Media")
_PRODUCTS: Final = (
    "invoice", "password reset", "mobile app", "export", "billing page", "API token", "webhook",
    "dashboard", "single sign-on", "shipment", "refund", "report", "integration", "login",
)  # fmt: skip
_PROBLEMS: Final = (
    "is not loading", "shows the wrong total", "fails with an error", "is very slow",
    "keeps logging me out", "was charged twice", "is missing data", "cannot be downloaded",
    "stopped syncing", "needs a new owner",
)  # fmt: skip
_SENTENCE_OPENERS: Final = (
    "Since this morning", "After the last update", "When I open the page", "For some customers",
    "Every Monday", "Since we changed plans", "On the mobile app", "Intermittently",
)  # fmt: skip
_REPLIES: Final = (
    "Thanks for reaching out, we are looking into it.",
    "Could you send a screenshot of the error?",
    "This should be fixed now, please try again.",
    "I have escalated this to our engineering team.",
    "Can you confirm which browser you are using?",
    "We issued a refund, it should arrive within five days.",
    "Closing this as resolved, reply to reopen.",
)
_TAGS: Final = (
    "billing", "bug", "feature_request", "vip", "mobile", "api", "onboarding", "refund",
    "outage", "sso", "churn_risk", "enterprise",
)  # fmt: skip
_TAG_STRIDES: Final = (1, 5, 7, 11)  # coprime with len(_TAGS) == 12: no tag repeats
_STATUSES: Final = ("open", "pending", "solved", "closed")
_PRIORITIES: Final = ("low", "normal", "high", "urgent")
_CUSTOM_FIELD_VALUES: Final = ("web", "email", "phone", "chat", "eu", "us", "apac", "trial")
_ROLES: Final = ("agent", "admin", "light_agent")
_GROUP_NAMES: Final = (
    "Tier 1", "Tier 2", "Billing", "Escalations", "Onboarding", "Enterprise", "Partners",
    "Mobile", "API", "Security", "Returns", "Shipping", "Sales", "EMEA", "APAC", "Americas",
    "Night shift", "Weekend", "VIP", "Triage",
)  # fmt: skip
_BRAND_NAMES: Final = ("Northwind", "Bluebird", "Kiteworks", "Orbit", "Parcelo", "Quillon")
_PLANS: Final = ("free", "team", "business", "enterprise")
_REGIONS: Final = ("eu", "us", "apac", "latam")


# --- row generators ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refs:
    """Base row counts used to draw foreign keys."""

    tickets: int
    organizations: int
    agents: int
    groups: int
    brands: int
    customers: int


def _ref(bits: bytes, at: int, count: int) -> int | None:
    """Draws a foreign key in `[1, count]` from three bytes; None when the table is empty."""
    if count <= 0:
        return None
    return (bits[at] | bits[at + 1] << 8 | bits[at + 2] << 16) % count + 1


def _sentence(bits: bytes, at: int) -> str:
    """Builds a complaint sentence from three bytes."""
    opener = _pick(_SENTENCE_OPENERS, bits[at])
    return f"{opener} the {_pick(_PRODUCTS, bits[at + 1])} {_pick(_PROBLEMS, bits[at + 2])}."


def _tags(bits: bytes, at: int) -> list[str]:
    """Draws 0-4 distinct tags from three bytes (a start and a stride coprime with 12)."""
    count = bits[at] % 5
    start = bits[at + 1]
    stride = _TAG_STRIDES[bits[at + 2] & 3]
    return [_TAGS[(start + step * stride) % len(_TAGS)] for step in range(count)]


def _ticket(bits: bytes, row_id: int, updated: int, refs: _Refs) -> Row:
    due = updated + _u24(bits, 15) % (14 * 86_400)
    return {
        "id": row_id,
        "subject": f"The {_pick(_PRODUCTS, bits[3])} {_pick(_PROBLEMS, bits[4])}",
        "description": _sentence(bits, 5),
        "status": _pick(_STATUSES, bits[8]),
        "priority": None if _chance(bits[9], 20) else _pick(_PRIORITIES, bits[10]),
        "tags": _tags(bits, 11),
        "custom_fields": [
            {"id": 360_000_001, "value": _pick(_CUSTOM_FIELD_VALUES, bits[14])},
            {
                "id": 360_000_002,
                "value": None if _chance(bits[18], 40) else _pick(_REGIONS, bits[19]),
            },
        ],
        "organization_id": _ref(bits, 20, refs.organizations),
        "requester_id": _ref(bits, 23, refs.customers),
        "assignee_id": None if _chance(bits[26], 15) else _ref(bits, 27, refs.agents),
        "group_id": _ref(bits, 30, refs.groups),
        "brand_id": _ref(bits, 33, refs.brands),
        "is_public": _chance(bits[36], 90),
        "due_at": format_timestamp(due) if _chance(bits[37], 30) else None,
        "created_at": format_timestamp(updated - _u24(bits, 0) % (7 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


def _ticket_comment(bits: bytes, row_id: int, updated: int, refs: _Refs) -> Row:
    from_agent = _chance(bits[3], 50)
    return {
        "id": row_id,
        "ticket_id": _ref(bits, 4, refs.tickets),
        "author_id": _ref(bits, 7, refs.agents if from_agent else refs.customers),
        "body": _pick(_REPLIES, bits[10]) if from_agent else _sentence(bits, 11),
        "public": _chance(bits[14], 80),
        "created_at": format_timestamp(updated - _u24(bits, 0) % (2 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


def _organization(bits: bytes, row_id: int, updated: int, _refs: _Refs) -> Row:
    word = _pick(_COMPANY_WORDS, bits[3])
    domain = f"{word.lower()}{row_id}.example.com"
    extra_domain = [f"{word.lower()}{row_id}.example.org"] if _chance(bits[5], 30) else []
    since = 2015 + bits[7] % 9
    return {
        "id": row_id,
        "name": f"{word} {_pick(_COMPANY_SUFFIXES, bits[4])} {row_id}",
        "domain_names": [domain, *extra_domain],
        "details": None if _chance(bits[6], 50) else f"Customer since {since}.",
        "organization_fields": {
            "plan": _pick(_PLANS, bits[8]),
            "region": _pick(_REGIONS, bits[9]),
            "seats": 5 + _u24(bits, 10) % 500,
        },
        "created_at": format_timestamp(updated - _u24(bits, 0) % (365 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


def _agent(bits: bytes, row_id: int, updated: int, _refs: _Refs) -> Row:
    first = _pick(_FIRST_NAMES, bits[3])
    last = _pick(_LAST_NAMES, bits[4])
    return {
        "id": row_id,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}.{row_id}@desk.example.com",
        "role": _pick(_ROLES, bits[5]),
        "active": _chance(bits[6], 90),
        "created_at": format_timestamp(updated - _u24(bits, 0) % (365 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


def _group(bits: bytes, row_id: int, updated: int, _refs: _Refs) -> Row:
    base_name = _GROUP_NAMES[(row_id - 1) % len(_GROUP_NAMES)]
    name = base_name if row_id <= len(_GROUP_NAMES) else f"{base_name} {row_id}"
    description = f"Handles {_pick(_PRODUCTS, bits[4])} requests."
    return {
        "id": row_id,
        "name": name,
        "description": None if _chance(bits[3], 30) else description,
        "created_at": format_timestamp(updated - _u24(bits, 0) % (365 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


def _brand(bits: bytes, row_id: int, updated: int, _refs: _Refs) -> Row:
    base_name = _BRAND_NAMES[(row_id - 1) % len(_BRAND_NAMES)]
    name = base_name if row_id <= len(_BRAND_NAMES) else f"{base_name} {row_id}"
    return {
        "id": row_id,
        "name": name,
        "subdomain": name.lower().replace(" ", "-"),
        "active": _chance(bits[3], 85),
        "created_at": format_timestamp(updated - _u24(bits, 0) % (365 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


def _customer(bits: bytes, row_id: int, updated: int, refs: _Refs) -> Row:
    first = _pick(_FIRST_NAMES, bits[3])
    last = _pick(_LAST_NAMES, bits[4])
    phone = f"+1-555-{_u24(bits, 6) % 10_000:04d}"
    return {
        "id": row_id,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}.{row_id}@customer.example.net",
        "phone": None if _chance(bits[5], 40) else phone,
        "organization_id": None if _chance(bits[9], 25) else _ref(bits, 10, refs.organizations),
        "created_at": format_timestamp(updated - _u24(bits, 0) % (180 * 86_400)),
        "updated_at": format_timestamp(updated),
    }


_Generator = Callable[[bytes, int, int, _Refs], Row]

_GENERATORS: Final[dict[str, _Generator]] = {
    "tickets": _ticket,
    "ticket_comments": _ticket_comment,
    "organizations": _organization,
    "agents": _agent,
    "groups": _group,
    "brands": _brand,
    "customers": _customer,
}


# --- mutation patches --------------------------------------------------------------------------


def _patch_ticket(row: Row, rng: random.Random) -> Row:
    statuses = [status for status in _STATUSES if status != row["status"]]
    return {"status": rng.choice(statuses), "priority": rng.choice(_PRIORITIES)}


def _patch_comment(row: Row, rng: random.Random) -> Row:
    del row
    return {"body": f"{rng.choice(_REPLIES)} (edited)"}


def _patch_organization(row: Row, rng: random.Random) -> Row:
    return {
        "details": f"Renewed on plan {rng.choice(_PLANS)}.",
        "organization_fields": {**row["organization_fields"], "plan": rng.choice(_PLANS)},
    }


def _patch_agent(row: Row, rng: random.Random) -> Row:
    roles = [role for role in _ROLES if role != row["role"]]
    return {"role": rng.choice(roles), "active": not row["active"]}


def _patch_group(row: Row, rng: random.Random) -> Row:
    del row
    return {"description": f"Now also handles {rng.choice(_PRODUCTS)} requests."}


def _patch_brand(row: Row, rng: random.Random) -> Row:
    del rng
    return {"active": not row["active"]}


def _patch_customer(row: Row, rng: random.Random) -> Row:
    first, last = row["name"].split(" ", 1)
    last = rng.choice([name for name in _LAST_NAMES if name != last])
    return {"name": f"{first} {last}", "phone": f"+1-555-{rng.randrange(10_000):04d}"}


_PATCHERS: Final[dict[str, Callable[[Row, random.Random], Row]]] = {
    "tickets": _patch_ticket,
    "ticket_comments": _patch_comment,
    "organizations": _patch_organization,
    "agents": _patch_agent,
    "groups": _patch_group,
    "brands": _patch_brand,
    "customers": _patch_customer,
}


DELETE_MARKERS: Final[Mapping[str, tuple[str, Any]]] = {"tickets": ("status", "deleted")}
"""How a deleted row is marked, by table: `(field, value)`. Tables not listed use
`DEFAULT_DELETE_MARKER`. A deleted row stays in the listing with a new `updated_at`, as APIs
that soft-delete serve it, so an incremental sync sees the deletion."""

DEFAULT_DELETE_MARKER: Final[tuple[str, Any]] = ("deleted", True)
"""`deleted: true` on a deleted row of a table not in `DELETE_MARKERS`."""


def delete_marker(table: str) -> tuple[str, Any]:
    """Returns the `(field, value)` that marks a deleted row of `table`.

    Args:
        table: Table name.

    Returns:
        The marker field and the value it takes on a deleted row.
    """
    return DELETE_MARKERS.get(table, DEFAULT_DELETE_MARKER)


def is_deleted(table: str, row: Mapping[str, Any]) -> bool:
    """Tells whether a served row of `table` is marked deleted.

    Args:
        table: Table name.
        row: The row as served.

    Returns:
        True when the row carries the table's delete marker.
    """
    name, value = delete_marker(table)
    return bool(row.get(name) == value)


def _drift_ticket(row: Row) -> Row:
    # a new field, a field that turns null, an id that turns into text and a priority that
    # turns into a number
    requester = row["requester_id"]
    if not isinstance(requester, str):  # drifted before: already text
        requester = f"cust-{requester or 0:06d}"
    return {
        "satisfaction_score": 1 + row["id"] % 5,
        "subject": None,
        "requester_id": requester,
        "priority": 1 + row["id"] % 4,
    }


def _drift_agent(row: Row) -> Row:
    # a new field, a field that turns null and a boolean that turns into text
    return {
        "time_zone": _pick(("Europe/Paris", "America/Chicago", "Asia/Tokyo"), row["id"]),
        "email": None,
        "active": "on_leave",
    }


DRIFTERS: Final[Mapping[str, Callable[[Row], Row]]] = {
    "tickets": _drift_ticket,
    "agents": _drift_agent,
}
"""Schema drift applied to updated rows by `mutate(..., drift=True)`, by table: a new field
(`satisfaction_score`, `time_zone`), a field that turns null (`subject`, `email`) and fields
whose type changes (`requester_id` from integer to text, `active` from boolean to text,
`priority` from text to integer)."""


# --- dataset -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MutationResult:
    """What one `Dataset.mutate` call changed in one table.

    Attributes:
        updated_ids: Ids of existing rows that got a new `updated_at`, ascending.
        created_ids: Ids of new rows, ascending, all above the previous maximum id.
        deleted_ids: Ids of rows marked deleted (see `delete_marker`), ascending.
    """

    updated_ids: tuple[int, ...]
    created_ids: tuple[int, ...]
    deleted_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Window:
    """A slice of a table's ordered, filtered view.

    Attributes:
        rows: The rows of the slice, fresh dicts.
        total: How many rows match the filters in the whole view.
        start: Position of the first row of the slice within the filtered view.
        last_key: `(updated_at epoch seconds, id)` of the last row, None if `rows` is empty.
        has_more: Whether rows follow the slice in the filtered view.
    """

    rows: list[Row]
    total: int
    start: int
    last_key: RowKey | None
    has_more: bool


@dataclass
class _Overlay:
    """A mutated or created row: its base index, its new time and the fields that changed."""

    index: int
    updated: int
    patch: Row


@dataclass
class _TableState:
    """Mutable bookkeeping of one table. Guarded by `Dataset._lock`."""

    name: str
    base_count: int
    salt: int
    draw_key: bytes
    generator: _Generator
    next_id: int
    superseded: list[int] = field(default_factory=list)
    overlay: dict[int, _Overlay] = field(default_factory=dict)
    overlay_keys: list[RowKey] = field(default_factory=list)
    unseen_ids: set[int] = field(default_factory=set)
    """Ids of created rows whose change is still pending (stamped, not yet visible)."""

    def base_ts(self, index: int) -> int:
        """Returns the base `updated_at` of the row at `index` in epoch seconds.

        Rows come in blocks of four spanning 30 seconds. Inside a block, each step to the next
        row either stays on the same second (5 times in 8) or advances 1-8 seconds, so
        timestamps never decrease and ties are common. The largest in-block offset is 27 s, so
        blocks never overlap.
        """
        block, within = divmod(index, _BLOCK_ROWS)
        bits = _mix64(self.salt ^ block)
        seconds = START_EPOCH + block * _BLOCK_SECONDS + ((bits >> 56) & 3)
        for step in range(within):
            if ((bits >> (8 * step)) & 0xFF) >= _TIE_THRESHOLD:
                seconds += 1 + ((bits >> (24 + 4 * step)) & 7)
        return seconds

    def base_first_at_or_after(self, seconds: int) -> int:
        """Returns the first base index whose `updated_at` is >= `seconds` (or base_count)."""
        if seconds <= START_EPOCH:
            return 0
        block = (seconds - START_EPOCH) // _BLOCK_SECONDS
        first = block * _BLOCK_ROWS
        for index in range(first, min(first + _BLOCK_ROWS, self.base_count)):
            if self.base_ts(index) >= seconds:
                return index
        return min(first + _BLOCK_ROWS, self.base_count)

    def base_position_after(self, key: RowKey, lo: int, hi: int) -> int:
        """Returns the first base index in `[lo, hi]` whose key is greater than `key`."""
        seconds, row_id = key
        same_second_start = self.base_first_at_or_after(seconds)
        later_start = self.base_first_at_or_after(seconds + 1)
        # Inside the same second ids grow with the index (id = index + 1).
        position = min(max(row_id, same_second_start), later_start)
        return min(max(position, lo), hi)

    def last_ts(self) -> int | None:
        """Returns the largest `updated_at` in the table, None if it is empty."""
        if self.overlay_keys:
            return self.overlay_keys[-1][0]
        if self.base_count:
            return self.base_ts(self.base_count - 1)
        return None


class Dataset:
    """A deterministic fake support desk generated from a seed and per-table sizes.

    Rows are generated when read. Reads and mutations are thread-safe.
    """

    def __init__(self, seed: int, table_sizes: Mapping[str, int]) -> None:
        """Creates the dataset. Use `generate_dataset` rather than calling this directly.

        Args:
            seed: Seed of every generated value.
            table_sizes: Base row count of each table in `TABLES`.

        Raises:
            ValueError: If a table is unknown or missing, or a size is negative.
        """
        unknown = set(table_sizes) - set(TABLES)
        missing = set(TABLES) - set(table_sizes)
        if unknown or missing:
            raise ValueError(f"unknown tables {sorted(unknown)}, missing tables {sorted(missing)}")
        if any(count < 0 for count in table_sizes.values()):
            raise ValueError("table sizes must be >= 0")
        self.seed = seed
        self._lock = threading.Lock()
        self._mutations = 0
        self._refs = _Refs(
            tickets=table_sizes["tickets"],
            organizations=table_sizes["organizations"],
            agents=table_sizes["agents"],
            groups=table_sizes["groups"],
            brands=table_sizes["brands"],
            customers=table_sizes["customers"],
        )
        self._tables: dict[str, _TableState] = {}
        self._pending: list[tuple[_TableState, _Overlay]] = []
        self._version = 0
        """Bumped whenever rows become visible or change (mutations, commits)."""
        self._indexes: dict[tuple[str, str], tuple[int, dict[Any, list[RowKey]]]] = {}
        """`(table, field)` -> (the `_version` it was built at, field value -> sorted keys)."""
        for name in TABLES:
            digest = hashlib.sha256(f"support-api-sandbox:{seed}:{name}".encode()).digest()
            self._tables[name] = _TableState(
                name=name,
                base_count=table_sizes[name],
                salt=int.from_bytes(digest[:8], "little"),
                draw_key=digest,
                generator=_GENERATORS[name],
                next_id=table_sizes[name] + 1,
            )
        last = [ts for state in self._tables.values() if (ts := state.last_ts()) is not None]
        self._now = max([START_EPOCH, *last])

    def __repr__(self) -> str:
        """Returns a short description with the seed and the ticket count."""
        return f"Dataset(seed={self.seed}, tickets={self._tables['tickets'].base_count})"

    @property
    def tables(self) -> tuple[str, ...]:
        """Names of all tables."""
        return TABLES

    @property
    def base_sizes(self) -> dict[str, int]:
        """Row count of each table before any mutation."""
        return {name: state.base_count for name, state in self._tables.items()}

    @property
    def now(self) -> int:
        """The latest `updated_at` handed out so far (epoch seconds); mutations go after it."""
        with self._lock:
            return self._now

    def _state(self, table: str) -> _TableState:
        try:
            return self._tables[table]
        except KeyError:
            raise KeyError(f"unknown table {table!r}") from None

    def count(self, table: str) -> int:
        """Returns the current number of rows of `table`.

        Args:
            table: Table name.

        Returns:
            Base rows plus created rows.
        """
        state = self._state(table)
        with self._lock:
            return state.next_id - 1 - len(state.unseen_ids)

    def max_updated_at(self, table: str) -> str | None:
        """Returns the latest `updated_at` of `table`, None if the table is empty.

        Args:
            table: Table name.

        Returns:
            The timestamp as served.
        """
        state = self._state(table)
        with self._lock:
            last = state.last_ts()
        return None if last is None else format_timestamp(last)

    def _build(self, state: _TableState, index: int, overlay: _Overlay | None) -> Row:
        bits = _row_bits(state.draw_key, index)
        row = state.generator(bits, index + 1, state.base_ts(index), self._refs)
        if overlay is not None:
            row.update(overlay.patch)
        return row

    def get(self, table: str, row_id: int) -> Row:
        """Returns the current version of one row.

        Args:
            table: Table name.
            row_id: The row's id.

        Returns:
            A fresh dict.

        Raises:
            KeyError: If the table or the id does not exist.
        """
        state = self._state(table)
        with self._lock:
            if not 1 <= row_id < state.next_id or row_id in state.unseen_ids:
                raise KeyError(f"{table} has no row with id {row_id}")
            overlay = state.overlay.get(row_id)
        return self._build(state, row_id - 1, overlay)

    def ids(self, table: str) -> list[int]:
        """Returns the ids of `table` in the current order, by (updated_at, id).

        Args:
            table: Table name.

        Returns:
            Every id once.
        """
        state = self._state(table)
        with self._lock:
            superseded = set(state.superseded)
            overlay_ids = [row_id for _, row_id in state.overlay_keys]
            base_count = state.base_count
        if not superseded:
            return [*range(1, base_count + 1), *overlay_ids]
        base = [i + 1 for i in range(base_count) if i not in superseded]
        return base + overlay_ids

    def rows(self, table: str, chunk_size: int = 1000) -> Iterator[Row]:
        """Iterates over every row of `table` in the current order, by (updated_at, id).

        Reads chunk by chunk with a keyset, so a concurrent mutation moves a row to the end
        rather than making the iteration skip another row.

        Args:
            table: Table name.
            chunk_size: Rows fetched per internal page.

        Yields:
            Fresh row dicts.
        """
        after: RowKey | None = None
        while True:
            window = self.window(table, chunk_size, after=after)
            yield from window.rows
            if not window.has_more or window.last_key is None:
                return
            after = window.last_key

    def page(
        self,
        table: str,
        offset: int,
        limit: int,
        updated_since: TimeBound = None,
        updated_before: TimeBound = None,
    ) -> tuple[list[Row], int]:
        """Returns one page of the ordered view of `table`.

        Args:
            table: Table name.
            offset: Rows of the filtered view to skip.
            limit: Maximum number of rows returned.
            updated_since: Keep rows with `updated_at >= updated_since` (inclusive).
            updated_before: Keep rows with `updated_at < updated_before` (exclusive).

        Returns:
            The rows ordered by (updated_at, id) and the number of rows matching the filters.
        """
        window = self.window(
            table,
            limit,
            offset=offset,
            updated_since=updated_since,
            updated_before=updated_before,
        )
        return window.rows, window.total

    def window(
        self,
        table: str,
        limit: int,
        *,
        offset: int = 0,
        after: RowKey | None = None,
        updated_since: TimeBound = None,
        updated_before: TimeBound = None,
        where: tuple[str, Any] | None = None,
    ) -> Window:
        """Returns a slice of the ordered, filtered view of `table`.

        Cost is independent of how deep the slice starts: base positions are found
        arithmetically and superseded rows with a binary search. With `where`, the rows come
        from an index of that field (see `index`), built on first use and after changes.

        Args:
            table: Table name.
            limit: Maximum number of rows returned.
            offset: Rows to skip, counted after `after` when both are given.
            after: Start right after this `(updated_at epoch seconds, id)` key (keyset paging).
            updated_since: Keep rows with `updated_at >= updated_since` (inclusive).
            updated_before: Keep rows with `updated_at < updated_before` (exclusive).
            where: `(field, value)`: keep only rows whose field equals the value, e.g.
                `("ticket_id", 7)` for the comments of ticket 7.

        Returns:
            The slice with the filtered total and whether more rows follow.

        Raises:
            ValueError: If `offset` or `limit` is negative or a bound is not a timestamp.
        """
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        state = self._state(table)
        since = _bound_seconds(updated_since)
        before = _bound_seconds(updated_before)
        if where is not None:
            return self._window_where(table, where, limit, offset, after, since, before)
        with self._lock:
            specs, total, start = self._select(state, limit, offset, after, since, before)
        rows = [self._build(state, index, overlay) for index, overlay in specs]
        last_key: RowKey | None = None
        if specs:
            index, overlay = specs[-1]
            seconds = overlay.updated if overlay is not None else state.base_ts(index)
            last_key = (seconds, index + 1)
        return Window(
            rows=rows,
            total=total,
            start=start,
            last_key=last_key,
            has_more=start + len(rows) < total,
        )

    def index(self, table: str, field: str) -> dict[Any, list[RowKey]]:
        """Groups the keys of a table's current rows by the value of one field.

        Built by reading the whole table once, then kept until the data changes.

        Args:
            table: Table name.
            field: Field to group by, e.g. `ticket_id`.

        Returns:
            Field value -> `(updated_at epoch seconds, id)` of its rows, in the table's order.
            Shared: do not change it.
        """
        self._state(table)
        with self._lock:
            version = self._version
            cached = self._indexes.get((table, field))
        if cached is not None and cached[0] == version:
            return cached[1]
        grouped: dict[Any, list[RowKey]] = {}
        for row in self.rows(table):
            key = (int(parse_timestamp(row["updated_at"])), int(row["id"]))
            grouped.setdefault(row.get(field), []).append(key)
        with self._lock:
            if self._version == version:
                self._indexes[table, field] = (version, grouped)
        return grouped

    def _window_where(
        self,
        table: str,
        where: tuple[str, Any],
        limit: int,
        offset: int,
        after: RowKey | None,
        since: int | None,
        before: int | None,
    ) -> Window:
        """`window` over the rows whose `where` field has the given value, from `index`."""
        field_name, value = where
        keys = self.index(table, field_name).get(value, [])
        lo = 0 if since is None else bisect.bisect_left(keys, (since, 0))
        hi = len(keys) if before is None else bisect.bisect_left(keys, (before, 0))
        hi = max(hi, lo)
        total = hi - lo
        start = offset
        if after is not None:
            start += min(max(bisect.bisect_right(keys, after), lo), hi) - lo
        start = min(start, total)
        chosen = keys[lo + start : lo + min(total, start + limit)]
        rows = [self.get(table, row_id) for _, row_id in chosen]
        return Window(
            rows=rows,
            total=total,
            start=start,
            last_key=chosen[-1] if chosen else None,
            has_more=start + len(chosen) < total,
        )

    def _select(
        self,
        state: _TableState,
        limit: int,
        offset: int,
        after: RowKey | None,
        since: int | None,
        before: int | None,
    ) -> tuple[list[tuple[int, _Overlay | None]], int, int]:
        """Finds which rows a window holds. Called with the lock held.

        Returns:
            `(base index, overlay or None)` per row, the filtered total and the start position.
        """
        superseded = state.superseded
        keys = state.overlay_keys
        # Base range [lo, hi) and overlay range [olo, ohi) matching the filters.
        lo = 0 if since is None else state.base_first_at_or_after(since)
        hi = state.base_count if before is None else state.base_first_at_or_after(before)
        hi = max(hi, lo)
        olo = 0 if since is None else bisect.bisect_left(keys, (since, 0))
        ohi = len(keys) if before is None else bisect.bisect_left(keys, (before, 0))
        ohi = max(ohi, olo)
        slo = bisect.bisect_left(superseded, lo)
        shi = bisect.bisect_left(superseded, hi)
        base_total = (hi - lo) - (shi - slo)
        total = base_total + (ohi - olo)

        start = offset
        if after is not None:
            position = state.base_position_after(after, lo, hi)
            skipped_base = (position - lo) - (bisect.bisect_left(superseded, position) - slo)
            overlay_position = min(max(bisect.bisect_right(keys, after), olo), ohi)
            start += skipped_base + (overlay_position - olo)
        start = min(start, total)

        specs: list[tuple[int, _Overlay | None]] = []
        if start < base_total and limit > 0:
            # The k-th live base row: skip every superseded index at or before it. The number
            # of free slots before superseded[j] never decreases with j, so bisect on it.
            k = start
            skipped = bisect.bisect_right(
                range(slo, shi), k, key=lambda j: superseded[j] - lo - (j - slo)
            )
            index = lo + k + skipped
            next_superseded = slo + skipped
            while index < hi and len(specs) < limit:
                if next_superseded < shi and superseded[next_superseded] == index:
                    next_superseded += 1
                else:
                    specs.append((index, None))
                index += 1
        remaining = limit - len(specs)
        if remaining > 0:
            first = olo + max(0, start - base_total)
            for _, row_id in keys[first : min(ohi, first + remaining)]:
                overlay = state.overlay[row_id]
                specs.append((overlay.index, overlay))
        return specs, total, start

    def mutate(
        self,
        updates: int,
        creates: int,
        seed: int | None = None,
        tables: Sequence[str] | None = None,
        *,
        same_second: bool = False,
        deletes: int = 0,
        drift: bool = False,
        pending: bool = False,
    ) -> dict[str, MutationResult]:
        """Updates existing rows and creates new ones in each table.

        Every touched row gets an `updated_at` strictly later than any timestamp handed out
        before, so it moves to the end of the ordered view. Up to three rows share each new
        second, keeping same-second ties in incremental loads.

        Args:
            updates: Existing rows to update per table (capped at the table's row count).
            creates: New rows to create per table; their ids continue above the maximum id.
            seed: Seed choosing rows and new values; None uses a counter of previous calls.
            tables: Tables to mutate; None means all.
            same_second: Stamp every touched row with the latest second handed out so far
                instead of new seconds: rows that appear after a sync in the very second of
                the last row it saw (the tie an incremental load must neither lose nor repeat).
            deletes: Existing rows (not updated by this call, not deleted before) to mark
                deleted per table, with the table's `delete_marker` and a new `updated_at`.
            drift: Give updated rows of the tables in `DRIFTERS` a new field, a field turned
                null and a field of another type (schema drift).
            pending: Stamp the changes now but keep them invisible (readers see the previous
                versions, created rows are not listed) until `commit_pending`: a transaction
                that stamps `updated_at` when it starts and commits a moment later.

        Returns:
            What changed, by table.

        Raises:
            ValueError: If `updates`, `creates` or `deletes` is negative.
            KeyError: If a table is unknown.
        """
        if updates < 0 or creates < 0 or deletes < 0:
            raise ValueError("updates, creates and deletes must be >= 0")
        names = list(TABLES if tables is None else tables)
        states = [self._state(name) for name in names]
        results: dict[str, MutationResult] = {}
        with self._lock:
            self._mutations += 1
            self._version += 1
            mutation_seed = self._mutations if seed is None else seed
            start = self._now + 1
            latest = self._now
            for state in states:
                rng_seed = f"{self.seed}:{mutation_seed}:{state.name}"
                rng = random.Random(rng_seed)  # noqa: S311 - reproducible fake data, not security
                existing = state.next_id - 1
                population: Sequence[int] = range(1, existing + 1)
                if state.unseen_ids:
                    population = [i for i in population if i not in state.unseen_ids]
                updated_ids = sorted(rng.sample(population, min(updates, len(population))))
                deleted_ids = self._pick_deletions(state, rng, deletes, updated_ids)
                created_ids = list(range(state.next_id, state.next_id + creates))
                state.next_id += creates
                touched = [(row_id, "updated") for row_id in updated_ids]
                touched += [(row_id, "created") for row_id in created_ids]
                touched += [(row_id, "deleted") for row_id in deleted_ids]
                for position, (row_id, change) in enumerate(touched):
                    seconds = (
                        self._now
                        if same_second
                        else start + position // _ROWS_PER_SECOND_ON_MUTATION
                    )
                    latest = max(latest, seconds)
                    stamp = format_timestamp(seconds)
                    if change == "created":
                        patch: Row = {"created_at": stamp, "updated_at": stamp}
                    elif change == "deleted":
                        patch = self._delete_patch(state, row_id, stamp)
                    else:
                        patch = self._update_patch(state, row_id, rng, stamp, drift=drift)
                    overlay = _Overlay(index=row_id - 1, updated=seconds, patch=patch)
                    if pending:
                        self._pending.append((state, overlay))
                        if change == "created":
                            state.unseen_ids.add(row_id)
                    else:
                        self._place(state, overlay)
                results[state.name] = MutationResult(
                    tuple(updated_ids), tuple(created_ids), tuple(deleted_ids)
                )
            self._now = latest
        return results

    def advance(self, seconds: int) -> int:
        """Lets time pass with no change: later changes are stamped after it.

        Args:
            seconds: How long.

        Returns:
            The new `now`.

        Raises:
            ValueError: If `seconds` is negative.
        """
        if seconds < 0:
            raise ValueError("time does not go back")
        with self._lock:
            self._now += seconds
            return self._now

    @property
    def pending(self) -> int:
        """How many changed rows are stamped but not visible yet (`mutate(pending=True)`)."""
        with self._lock:
            return len(self._pending)

    def commit_pending(self, count: int | None = None) -> int:
        """Makes pending changes visible, oldest first, with the `updated_at` they were given.

        A row changed again (and committed) since keeps its newer version.

        Args:
            count: Changed rows to commit; None commits all.

        Returns:
            How many rows were committed.
        """
        with self._lock:
            self._version += 1
            taken = self._pending if count is None else self._pending[:count]
            self._pending = self._pending[len(taken) :]
            for state, overlay in taken:
                row_id = overlay.index + 1
                state.unseen_ids.discard(row_id)
                current = state.overlay.get(row_id)
                if current is None or current.updated <= overlay.updated:
                    self._place(state, overlay)
        return len(taken)

    def _update_patch(
        self, state: _TableState, row_id: int, rng: random.Random, stamp: str, *, drift: bool
    ) -> Row:
        """Builds the new fields of an updated row. Called with the lock held."""
        previous = state.overlay.get(row_id)
        current = self._build(state, row_id - 1, previous)
        changes = _PATCHERS[state.name](current, rng)
        drifter = DRIFTERS.get(state.name) if drift else None
        if drifter is not None:
            changes.update(drifter(current))
        base_patch = previous.patch if previous is not None else {}
        return {**base_patch, **changes, "updated_at": stamp}

    def _pick_deletions(
        self, state: _TableState, rng: random.Random, deletes: int, updated_ids: Sequence[int]
    ) -> list[int]:
        """Chooses rows to mark deleted: live rows not updated now. Called with the lock held.

        Draws nothing from `rng` when `deletes` is 0, so mutations without deletions stay as
        they were before deletions existed.
        """
        if deletes == 0:
            return []
        # base rows never carry a delete marker: only overlay patches can
        taken = set(updated_ids)
        taken.update(
            row_id
            for row_id, overlay in state.overlay.items()
            if is_deleted(state.name, overlay.patch)
        )
        taken.update(state.unseen_ids)
        candidates = [row_id for row_id in range(1, state.next_id) if row_id not in taken]
        return sorted(rng.sample(candidates, min(deletes, len(candidates))))

    def _delete_patch(self, state: _TableState, row_id: int, stamp: str) -> Row:
        """Marks a row deleted with a new `updated_at`. Called with the lock held."""
        previous = state.overlay.get(row_id)
        base_patch = previous.patch if previous is not None else {}
        name, value = delete_marker(state.name)
        return {**base_patch, name: value, "updated_at": stamp}

    @staticmethod
    def _place(state: _TableState, overlay: _Overlay) -> None:
        """Moves a row into the overlay at its new position. Called with the lock held."""
        row_id = overlay.index + 1
        previous = state.overlay.get(row_id)
        if previous is not None:
            state.overlay_keys.remove((previous.updated, row_id))
        elif overlay.index < state.base_count:
            bisect.insort(state.superseded, overlay.index)
        state.overlay[row_id] = overlay
        bisect.insort(state.overlay_keys, (overlay.updated, row_id))


def generate_dataset(seed: int, size: int, table_sizes: Mapping[str, int] | None = None) -> Dataset:
    """Creates the deterministic dataset of a seed and a size.

    Nothing is generated up front, so any size is cheap to create.

    Args:
        seed: Seed of every generated value.
        size: Number of tickets; other tables scale from it (see `default_table_sizes`).
        table_sizes: Per-table overrides of the default sizes.

    Returns:
        The dataset.

    Raises:
        ValueError: If `size` is negative or an override names an unknown table.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    sizes = default_table_sizes(size)
    for name, count in (table_sizes or {}).items():
        if name not in sizes:
            raise ValueError(f"unknown table {name!r}; tables are {', '.join(TABLES)}")
        sizes[name] = count
    return Dataset(seed, sizes)


@dataclass(frozen=True)
class SandboxSecrets:
    """Credentials of a sandbox, derived from its seed.

    Every value starts with `sbx` and a kind (`sbxclient-`, `sbxsecret-`, `sbxkey-`,
    `sbxrefresh-`, `sbxbearer-`) so a leak scanner can find them. `repr` hides the secrets.

    Attributes:
        client_id: OAuth2 client id (not secret, shown in repr).
        client_secret: OAuth2 client secret.
        api_key: Key for the `api_key_query` and `api_key_header` modes.
        refresh_token: The initial OAuth2 refresh token.
        bearer_token: Static token for the `bearer` mode.
    """

    client_id: str
    client_secret: str = field(repr=False)
    api_key: str = field(repr=False)
    refresh_token: str = field(repr=False)
    bearer_token: str = field(repr=False)


SECRET_PREFIXES: Final[tuple[str, ...]] = (
    "sbxclient-",
    "sbxsecret-",
    "sbxkey-",
    "sbxrefresh-",
    "sbxbearer-",
    "sbxaccess-",
)
"""Prefixes of every credential the sandbox makes, for leak scanners."""


def secret_value(seed: int, kind: str, counter: int = 0) -> str:
    """Derives one recognizable fake credential.

    Args:
        seed: Sandbox seed.
        kind: The credential kind, used as the prefix after `sbx` (e.g. `key`, `access`).
        counter: Distinguishes successive tokens of the same kind.

    Returns:
        `sbx<kind>-` followed by 32 hex characters.
    """
    digest = hashlib.sha256(f"support-api-sandbox-secret:{seed}:{kind}:{counter}".encode())
    return f"sbx{kind}-{digest.hexdigest()[:32]}"


def sandbox_secrets(seed: int) -> SandboxSecrets:
    """Returns the credentials a sandbox started with `seed` accepts.

    Args:
        seed: Sandbox seed.

    Returns:
        The deterministic credentials.
    """
    return SandboxSecrets(
        client_id=secret_value(seed, "client"),
        client_secret=secret_value(seed, "secret"),
        api_key=secret_value(seed, "key"),
        refresh_token=secret_value(seed, "refresh"),
        bearer_token=secret_value(seed, "bearer"),
    )
