"""Measures rows lost with each settle margin while changes stream in and show up late.

`python -m tests.measure_settle` runs the scenario of `tests/test_settle.py` (three
windowed runs of tickets, comments and organizations while the sandbox stamps changes and
shows them two batches later, then a quiet run) once per margin, on the sandbox's clock,
and prints the commit delay seen (sandbox seconds from a change's stamp to the moment it
showed) and how many rows ended missing or stale.
"""

from __future__ import annotations

import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import settle, support_api
from tests.helpers import make_pipeline, table_rows
from tests.sandbox import SandboxServer

TABLES = ["tickets", "ticket_comments", "organizations"]
MARGINS = (0, 2, 5, 10, 20, 60)


class LateChanges:
    """Every third data request: shows the batch held since two batches ago, stamps a batch
    held invisible, and commits one at once."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.requests = 0
        self.held: deque[tuple[int, int]] = deque()
        self.delays: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, route: Any) -> None:
        del route
        with self.lock:
            self.requests += 1
            if self.requests % 3:
                return
            if len(self.held) >= 2:
                count, stamped = self.held.popleft()
                self.server.commit_pending(count)
                self.delays.append(self.server.dataset.now - stamped)
            stamped = self.server.dataset.now + 1
            changes = self.server.mutate(updates=4, creates=1, tables=TABLES, pending=True)
            count = sum(len(c.updated_ids) + len(c.created_ids) for c in changes.values())
            self.held.append((count, stamped))
            self.server.mutate(updates=3, creates=1, tables=TABLES)


@contextmanager
def sandbox_clock(server: SandboxServer) -> Iterator[None]:
    original = settle.utc_now
    settle.utc_now = lambda: datetime.fromtimestamp(server.dataset.now, UTC)
    try:
        yield
    finally:
        settle.utc_now = original


def lost_rows(pipeline: Any, server: SandboxServer) -> int:
    lost = 0
    for table in TABLES:
        expected = {row["id"]: row["updated_at"] for row in server.dataset.rows(table)}
        got = {
            row_id: updated.strftime("%Y-%m-%dT%H:%M:%SZ")
            for row_id, updated in table_rows(pipeline, table, "id, updated_at")
        }
        lost += sum(1 for row_id, stamp in expected.items() if got.get(row_id) != stamp)
    return lost


def measure(margin: int, folder: Path) -> tuple[int, int]:
    server = SandboxServer(seed=29, size=300, shape="desk", latency_ms=4).start()
    try:
        late = LateChanges(server)
        server.before_data_request = late
        credentials = APIKeyAuth(name="api_key", api_key=server.secrets.api_key, location="query")
        options: dict[str, Any] = {"resources": TABLES, "page_size": 20, "concurrency": 4}
        pipeline = make_pipeline(folder, f"margin_{margin}")
        with sandbox_clock(server):
            for _ in range(3):
                pipeline.run(support_api(server.url, credentials, settle_seconds=margin, **options))
            server.before_data_request = None
            server.commit_pending()
            server.dataset.advance(margin + 1)
            pipeline.run(support_api(server.url, credentials, settle_seconds=margin, **options))
        return max(late.delays), lost_rows(pipeline, server)
    finally:
        server.stop()


def main() -> None:
    """Prints one line per margin."""
    with tempfile.TemporaryDirectory() as folder:
        for margin in MARGINS:
            delay, lost = measure(margin, Path(folder))
            print(f"settle_seconds={margin:>3}: longest commit delay {delay} s, rows lost {lost}")  # noqa: T201 - the report


if __name__ == "__main__":
    main()
