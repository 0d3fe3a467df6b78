"""The bare threaded client: the same pages as the dlt variants, with no pipeline at all.

`requests` sessions (one per thread), 8 threads reading every ticket's comments, to their
last page, while the calling thread reads the ticket pages and hands each page's tickets to
the pool as soon as the page arrives. Rows are only counted: their ids are kept, and written
to the run's DuckDB file after the timer stopped, so the bench checks them as it checks a
pipeline's. This is the sandbox's floor for the `desk_nested` shape: what the same requests
cost with the least client work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import duckdb
import requests

from tests.bench.spec import RunSpec
from tests.bench.variants import api_key

THREADS: Final = 8
TIMEOUT_S: Final = 60.0


class BareClient:
    """Reads tickets and every ticket's comments with a pool of `requests` sessions."""

    def __init__(self, spec: RunSpec, threads: int = THREADS) -> None:
        """Prepares the client.

        Args:
            spec: The run: base URL, seed (for the API key), page sizes.
            threads: Threads reading comments.
        """
        self.spec = spec
        self.threads = threads
        self._key = api_key(spec)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.requests = 0

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def pages(self, path: str, limit: int) -> Iterator[list[dict[str, Any]]]:
        """Every page of a cursor-paged path, in order.

        Args:
            path: URL path.
            limit: Page size.

        Yields:
            The rows of each page.
        """
        url = f"{self.spec.base_url}{path}"
        params: dict[str, Any] = {"limit": limit, "api_key": self._key}
        while True:
            response = self._session().get(url, params=params, timeout=TIMEOUT_S)
            response.raise_for_status()
            body = response.json()
            with self._lock:
                self.requests += 1
            yield body["data"]
            cursor = body.get("next_cursor")
            if cursor is None:
                return
            params = {"cursor": cursor, "limit": limit, "api_key": self._key}

    def _comment_ids(self, ticket_id: int) -> list[int]:
        limit = self.spec.child_page_size or self.spec.page_size
        path = f"/v1/tickets/{ticket_id}/comments"
        return [row["id"] for page in self.pages(path, limit) for row in page]

    def read(self) -> dict[str, list[int]]:
        """Reads every ticket and every ticket's comments.

        Returns:
            Ids read per table (`tickets`, `ticket_comments`), in the order read.
        """
        tickets: list[int] = []
        futures: list[Future[list[int]]] = []
        try:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="bare") as pool:
                for page in self.pages("/v1/tickets", self.spec.page_size):
                    for row in page:
                        tickets.append(row["id"])
                        futures.append(pool.submit(self._comment_ids, row["id"]))
                comments = [comment for future in futures for comment in future.result()]
        finally:
            for session in self._sessions:
                session.close()
        return {"tickets": tickets, "ticket_comments": comments}


def store_ids(db_path: Path, dataset: str, ids: dict[str, list[int]]) -> None:
    """Writes the ids read into one-column tables, for the bench's row check.

    Args:
        db_path: The run's DuckDB file.
        dataset: Schema name (the dlt dataset the check reads).
        ids: Ids per table.
    """
    with duckdb.connect(str(db_path)) as connection:
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
        for table, values in ids.items():
            qualified = f'"{dataset}"."{table}"'
            connection.execute(
                f"CREATE TABLE {qualified} AS SELECT unnest(?::BIGINT[]) AS id",
                [values],
            )
