"""Children of many parents in flight together: a bounded, ordered fan-out.

A dependent endpoint (`tickets/{resources.tickets.id}/comments`) is read once per parent
record. dlt's rest_api reads them one parent after another, so a page of 100 parents costs
100 round trips in a row. Here each parent's walk (all its child pages) is a task on a shared
pool; at most `width` run at once, and their pages are handed to dlt in parent order, as plain
dlt would hand them, so rows and their order are the same. Requests still go through the
resource's session: the rate-limit pacer and connection pool are those of every other request.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .settings import MAX_CONCURRENCY

T = TypeVar("T")
R = TypeVar("R")


def _in_slot(task: Callable[[T], R], item: T, slots: threading.BoundedSemaphore) -> R:
    """Runs a task that holds one of its resource's slots, and gives the slot back."""
    try:
        return task(item)
    finally:
        slots.release()


class FanOut:
    """A thread pool shared by the dependent resources of one source."""

    def __init__(self, max_threads: int = MAX_CONCURRENCY) -> None:
        """Creates the pool; threads start when the first task does.

        Args:
            max_threads: Threads at most, shared by every dependent resource of the source.
        """
        self._max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_threads, thread_name_prefix="support_api_children"
                )
            return self._pool

    def map_ordered(
        self,
        task: Callable[[T], R],
        items: Iterable[T],
        width: int,
        slots: threading.BoundedSemaphore | None = None,
    ) -> Iterator[R]:
        """Runs `task` on every item, at most `width` at a time, yielding results in order.

        Args:
            task: What to do for one item (read one parent's children).
            items: The items (one page of parent records).
            width: Most tasks in flight at once; 1 runs them one after another here.
            slots: Shared by every call of one resource, so that the bound holds for the
                resource as a whole: dlt may ask for the children of several parent pages
                before the first are all read. A slot is taken before a task is submitted and
                given back when it ends.

        Yields:
            Each item's result, in the order of `items`. A task's error is raised when its
            turn comes; the tasks not started yet are then cancelled.
        """
        if width <= 1:
            yield from (task(item) for item in items)
            return
        pool = self._executor()
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                if slots is None:
                    pending.append(pool.submit(task, item))
                else:
                    # tasks give their slot back when they end, consumed or not: no deadlock
                    slots.acquire()
                    pending.append(pool.submit(_in_slot, task, item, slots))
                if len(pending) >= width:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                if future.cancel() and slots is not None:
                    slots.release()
