"""The benchmark cases: which sandbox to start and which variants to run against it.

A case has one or more groups; a group is one sandbox process (shape, size, latency, rate
limit) and the variants measured against it. Ratios compare variants of the same group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tests.bench.spec import Shape, Variant
from tests.sandbox import TABLES

ALL_VARIANTS: Final[tuple[Variant, ...]] = ("plain_default", "plain_jsonl", "support_api")
TICKETS: Final = ("tickets",)
RATE_LIMIT: Final = 20
CHILD_VARIANTS: Final[tuple[Variant, ...]] = (
    "plain_default",
    "plain_parallelized",
    "support_api",
    "bare_threads",
)
"""Variants of the parent/child case: plain dlt, plain dlt with its dependent resource
parallelized, support_api, and the bare threaded client (no dlt: the server's floor)."""
CHILD_PAGE_SIZE: Final = 3
"""Comments per page in the parent/child case: about one ticket in seven has more than three
comments (up to nine), so a ticket's later pages are read and checked too."""
DUCKDB_BOUNDED: Final = "64MB"
"""DuckDB `memory_limit` of the bounded memory group (DuckDB's default is 80% of RAM)."""


@dataclass(frozen=True)
class Group:
    """One sandbox process and the variants run against it.

    Attributes:
        name: Label in the report (the shape, usually).
        shape: Sandbox route preset.
        size: Number of tickets.
        resources: Tables loaded and checked.
        variants: Variants, in run order.
        latency_ms: Sandbox delay per request.
        rate_limit: Sandbox requests per second, None for unlimited.
        incremental: Each variant loads once untimed, then the measured runs start from a
            copy of that state and find nothing new.
        timeout_s: Time limit of one run.
        duckdb_memory_limit: DuckDB `memory_limit` of every variant's destination; None keeps
            DuckDB's default.
        max_table_nesting: Set on every variant's source; None keeps dlt's default (child
            tables for nested lists).
        child_page_size: Page size of the dependent endpoint (`desk_nested` comments).
    """

    name: str
    shape: Shape
    size: int
    resources: tuple[str, ...]
    variants: tuple[Variant, ...]
    latency_ms: float = 0.0
    rate_limit: int | None = None
    incremental: bool = False
    timeout_s: float = 600.0
    duckdb_memory_limit: str | None = None
    max_table_nesting: int | None = None
    child_page_size: int | None = None


@dataclass(frozen=True)
class Case:
    """A named benchmark.

    Attributes:
        name: Name used with `--cases`.
        title: One line on what it measures.
        groups: Sandbox configurations.
        default_repeat: support_api runs when `--repeat` is not given.
        ratio_targets: A target is a ratio to plain jsonl, so plain jsonl runs as often as
            support_api; otherwise plain variants run `--plain-repeat` times (plain default
            always does).
        repeat_all: Every variant runs as often as support_api (its targets are ratios to
            each of them, on medians).
    """

    name: str
    title: str
    groups: tuple[Group, ...]
    default_repeat: int = 3
    ratio_targets: bool = False
    repeat_all: bool = False


def _ticket_groups(size: int, latency_ms: float = 0.0) -> tuple[Group, ...]:
    return tuple(
        Group(shape, shape, size, TICKETS, ALL_VARIANTS, latency_ms=latency_ms)
        for shape in ("seed001", "desk")
    )


def build_cases(quick: bool = False, tickets: int | None = None) -> list[Case]:
    """Every case, full size or (`quick`) small enough for a smoke run.

    Args:
        quick: Small sizes.
        tickets: Tickets of every case, in place of its size (a smoke test of the bench).

    Returns:
        The cases, in run order.
    """
    rate_limited = 4_000 if quick else 20_000
    everything = 2_000 if quick else 20_000
    memory = 50_000 if quick else 1_000_000
    parents = 300 if quick else 2_000
    if tickets is not None:
        rate_limited = everything = memory = parents = tickets
    else:
        tickets = 5_000 if quick else 50_000
    return [
        Case(
            "tickets_50k",
            f"{tickets:,} tickets, pages of 100, no latency",
            _ticket_groups(tickets),
            ratio_targets=True,
        ),
        Case(
            "seed_flat_50k",
            f"{tickets:,} ticket comments, seed001 shape: offset paging, flat records",
            (
                Group(
                    "seed001_comments",
                    "seed001",
                    tickets // 2,  # the sandbox serves two comments per ticket
                    ("ticket_comments",),
                    ALL_VARIANTS,
                ),
            ),
        ),
        Case(
            "seed_nested_json_50k",
            f"{tickets:,} tickets, seed001 shape, max_table_nesting=0: nested lists as json",
            (Group("seed001", "seed001", tickets, TICKETS, ALL_VARIANTS, max_table_nesting=0),),
        ),
        Case(
            "tickets_50k_latency20",
            f"{tickets:,} tickets, pages of 100, 20 ms per request",
            _ticket_groups(tickets, latency_ms=20.0),
        ),
        Case(
            "children_latency20",
            f"{parents:,} tickets and each one's comments (/v1/tickets/{{id}}/comments,"
            f" pages of {CHILD_PAGE_SIZE}), 20 ms per request",
            (
                Group(
                    "desk_nested",
                    "desk_nested",
                    parents,
                    ("tickets", "ticket_comments"),
                    CHILD_VARIANTS,
                    latency_ms=20.0,
                    child_page_size=CHILD_PAGE_SIZE,
                ),
            ),
            repeat_all=True,
        ),
        Case(
            "incremental_nochange",
            f"second run over {tickets:,} unchanged tickets (first run untimed)",
            (Group("desk", "desk", tickets, TICKETS, ALL_VARIANTS, incremental=True),),
        ),
        Case(
            "rate_limited_20rps",
            f"{rate_limited:,} tickets from an API allowing {RATE_LIMIT} requests/s",
            (Group("desk", "desk", rate_limited, TICKETS, ALL_VARIANTS, rate_limit=RATE_LIMIT),),
        ),
        Case(
            "all_resources",
            f"all {len(TABLES)} resources, {everything:,} tickets",
            (Group("desk", "desk", everything, TABLES, ALL_VARIANTS),),
        ),
        Case(
            "rows_1m_memory",
            f"{memory:,} tickets: peak memory",
            (
                Group(
                    "desk",
                    "desk",
                    memory,
                    TICKETS,
                    ("plain_jsonl", "support_api"),
                    timeout_s=3600.0,
                ),
                # DuckDB's cache bounded: what is left is the pipeline's own (plain jsonl runs
                # out of memory in DuckDB's read_json at this limit)
                Group(
                    f"desk_duckdb_{DUCKDB_BOUNDED}",
                    "desk",
                    memory,
                    TICKETS,
                    ("support_api",),
                    timeout_s=3600.0,
                    duckdb_memory_limit=DUCKDB_BOUNDED,
                ),
            ),
            default_repeat=1,
        ),
    ]


CASE_NAMES: Final = tuple(case.name for case in build_cases())
