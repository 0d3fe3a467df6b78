"""Checks what a run loaded against the sandbox dataset, reading the run's DuckDB file.

Per table: `count(*)`, `count(DISTINCT id)`, `min(id)` and `max(id)`, then the full set of
distinct ids streamed in id order and compared with the expected ids chunk by chunk. A table
is right when the count and the distinct count equal the expected count and the id sets are
equal: no row lost, none duplicated, none extra.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import duckdb

from tests.sandbox import generate_dataset

FETCH_ROWS: Final = 100_000


@dataclass(frozen=True)
class TableCheck:
    """One table of one run against the dataset.

    Attributes:
        table: Table name.
        expected: Expected number of rows (= distinct ids).
        count: Rows found.
        distinct: Distinct ids found.
        min_id: Smallest id found.
        max_id: Largest id found.
        ids_match: Whether the distinct ids found are exactly the expected ids.
        problem: What is wrong, None when the table is right.
    """

    table: str
    expected: int
    count: int
    distinct: int
    min_id: int | None
    max_id: int | None
    ids_match: bool
    problem: str | None

    @classmethod
    def missing(cls, table: str, expected: int, problem: str) -> TableCheck:
        """A table that could not be read at all."""
        return cls(table, expected, 0, 0, None, None, ids_match=False, problem=problem)

    @property
    def ok(self) -> bool:
        """Whether the table holds exactly the expected rows."""
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "ok": self.ok}


@functools.lru_cache(maxsize=16)
def expected_ids(seed: int, size: int, table: str) -> tuple[int, ...]:
    """Ids of a sandbox table in ascending order, regenerated in-process (cheap at any size).

    Args:
        seed: Sandbox seed.
        size: Number of tickets.
        table: Table name.

    Returns:
        The ids.
    """
    return tuple(sorted(generate_dataset(seed, size).ids(table)))


def _first_difference(found: Sequence[int], wanted: Sequence[int], offset: int) -> str:
    for position, (got, want) in enumerate(zip(found, wanted, strict=False)):
        if got != want:
            return f"id #{offset + position + 1} in order is {got}, expected {want}"
    if len(found) > len(wanted):
        return f"unexpected extra id {found[len(wanted)]}"
    return f"missing id {wanted[len(found)]}"


def _compare_ids(
    connection: duckdb.DuckDBPyConnection, qualified: str, wanted: Sequence[int]
) -> str | None:
    cursor = connection.execute(f"SELECT DISTINCT id FROM {qualified} ORDER BY id")  # noqa: S608 - names are ours
    position = 0
    for _ in range(len(wanted) // FETCH_ROWS + 2):
        chunk = [int(row[0]) for row in cursor.fetchmany(FETCH_ROWS)]
        if not chunk:
            break
        expected = wanted[position : position + len(chunk)]
        if chunk != list(expected):
            return _first_difference(chunk, expected, position)
        position += len(chunk)
    else:
        return "more distinct ids than expected"
    if position != len(wanted):
        return f"missing id {wanted[position]}"
    return None


def check_table(
    connection: duckdb.DuckDBPyConnection, dataset: str, table: str, wanted: Sequence[int]
) -> TableCheck:
    """Checks one table.

    Args:
        connection: Read-only connection to the run's DuckDB file.
        dataset: Schema (dlt dataset) name.
        table: Table name.
        wanted: Expected ids in ascending order.

    Returns:
        The check.
    """
    qualified = f'"{dataset}"."{table}"'
    exists = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [dataset, table],
    ).fetchone()
    if not exists or not exists[0]:
        return TableCheck.missing(table, len(wanted), "table not loaded")
    row = connection.execute(
        f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {qualified}"  # noqa: S608 - names are ours
    ).fetchone()
    assert row is not None
    count, distinct, min_id, max_id = (None if v is None else int(v) for v in row)
    count, distinct = count or 0, distinct or 0
    problem = None
    if count != len(wanted) or distinct != len(wanted):
        problem = f"{count} rows, {distinct} distinct ids, expected {len(wanted)}"
    id_problem = _compare_ids(connection, qualified, wanted)
    if problem is None and id_problem is not None:
        problem = f"id set differs: {id_problem}"
    return TableCheck(
        table, len(wanted), count, distinct, min_id, max_id, id_problem is None, problem
    )


def check_run(
    db_path: Path, dataset: str, seed: int, size: int, tables: Sequence[str]
) -> list[TableCheck]:
    """Checks every table a run should have loaded.

    Args:
        db_path: The run's DuckDB file.
        dataset: Dataset name.
        seed: Sandbox seed.
        size: Number of tickets.
        tables: Tables to check.

    Returns:
        One check per table.
    """
    wanted: Mapping[str, Sequence[int]] = {t: expected_ids(seed, size, t) for t in tables}
    if not db_path.exists():
        return [TableCheck.missing(t, len(wanted[t]), "no DuckDB file") for t in tables]
    with duckdb.connect(str(db_path), read_only=True) as connection:
        return [check_table(connection, dataset, t, wanted[t]) for t in tables]
