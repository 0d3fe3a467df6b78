"""Dependent endpoints: the children of many parents are read together, rows as plain dlt.

The concurrency check holds the first requests in the fake API until enough of them are in
flight at once, and counts the most in flight; one request after another never gets there.
No figure of time is asserted.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.support_api import ConfigError, support_api_from_config
from sources.support_api.fan_out import FanOut
from tests.fake_api import Host, Route, json_page, loopback_hosts
from tests.helpers import FACTORIES, find_cause, loaded_counts, make_pipeline, table_rows

hosts = loopback_hosts
"""The fake APIs of each test (a fixture)."""

PARENTS = 12


def test_map_ordered_hands_results_over_in_order_with_at_most_width_in_flight():
    running, most = 0, 0
    lock = threading.Lock()
    last_may_finish = threading.Event()

    def task(item: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if item == 0:
            # the first item finishes last: later ones are done and must wait their turn
            last_may_finish.wait(5)
        with lock:
            running -= 1
        if item == 3:
            last_may_finish.set()
        return item * 10

    results = list(FanOut(max_threads=8).map_ordered(task, range(10), width=4))

    assert results == [i * 10 for i in range(10)]
    assert most <= 4
    assert last_may_finish.is_set()


def test_map_ordered_raises_a_task_error_in_its_turn_and_cancels_the_rest():
    started: list[int] = []

    def task(item: int) -> int:
        started.append(item)
        if item == 1:
            raise ValueError("parent 1 failed")
        return item

    results = FanOut(max_threads=2).map_ordered(task, range(50), width=2)
    assert next(results) == 0
    with pytest.raises(ValueError, match="parent 1 failed"):
        next(results)
    assert len(started) < 50


def test_slots_bound_a_resource_across_the_parent_pages_dlt_asks_for_at_once():
    slots = threading.BoundedSemaphore(3)
    running, most = 0, 0
    lock = threading.Lock()

    def task(item: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)  # a request's round trip: lets tasks overlap if the bound allows
        with lock:
            running -= 1
        return item

    fan_out = FanOut(max_threads=16)
    # dlt takes from each parent page's generator in turn, before the first is done
    pages = [fan_out.map_ordered(task, range(p * 10, p * 10 + 10), 3, slots) for p in range(4)]
    results: list[int] = []
    while pages:
        for page in list(pages):
            try:
                results.append(next(page))
            except StopIteration:
                pages.remove(page)

    assert sorted(results) == list(range(40))
    assert most <= 3


def test_width_1_reads_one_parent_after_another():
    order: list[int] = []

    def task(item: int) -> int:
        order.append(item)
        return item

    results = list(FanOut().map_ordered(task, range(5), width=1))
    assert results == order == list(range(5))


class InFlight:
    """Holds the first `hold` comment requests until that many are in flight at once."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.now = 0
        self.most = 0
        self.arrived = 0
        self.reached = False
        self._changed = threading.Condition()

    def enter(self) -> None:
        with self._changed:
            self.now += 1
            self.arrived += 1
            self.most = max(self.most, self.now)
            self.reached = self.reached or self.now >= self.hold
            self._changed.notify_all()
            if self.arrived <= self.hold:
                # one request after another never gets here with `hold` waiting: it times out
                self._changed.wait_for(lambda: self.reached, timeout=10)

    def leave(self) -> None:
        with self._changed:
            self.now -= 1


def ticket_api(in_flight: InFlight | None = None) -> Route:
    """Tickets and, under each, its comments (some on two pages)."""

    def route(host: Host, path: str, query: dict[str, list[str]]):
        if path == "/tickets":
            since = query.get("updated_since", ["0"])[0]
            rows = [
                {"id": i, "updated_at": f"2024-01-01T00:00:{i:02d}Z"}
                for i in range(PARENTS)
                if f"2024-01-01T00:00:{i:02d}Z" >= since or since == "0"
            ]
            return json_page(rows)
        ticket = int(path.split("/")[2])
        if in_flight is not None:
            in_flight.enter()
            in_flight.leave()
        comments = [{"id": ticket * 100 + n, "body": f"c{n}"} for n in range(2)]
        if ticket % 3 == 0:  # some tickets have a second page of comments
            page = int(query.get("page", ["1"])[0])
            if page == 1:
                return json_page(comments, next=f"{host.origin}{path}?page=2")
            comments = [{"id": ticket * 100 + 50, "body": "late"}]
        return json_page(comments, next=None)

    return route


def child_config(base_url: str, **child: Any) -> dict[str, Any]:
    return {
        "client": {"base_url": base_url},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "tickets",
                "endpoint": {
                    "path": "/tickets",
                    "data_selector": "data",
                    "paginator": "single_page",
                    "incremental": {
                        "cursor_path": "updated_at",
                        "start_param": "updated_since",
                        "initial_value": "0",
                        "settle_seconds": 0,
                    },
                },
            },
            {
                "name": "comments",
                "endpoint": {
                    "path": "/tickets/{resources.tickets.id}/comments",
                    "data_selector": "data",
                    "paginator": {"type": "json_link", "next_url_path": "next"},
                },
                "include_from_parent": ["updated_at"],
                **child,
            },
        ],
    }


def test_children_of_different_parents_are_in_flight_together(tmp_path, hosts):
    in_flight = InFlight(hold=4)
    api = hosts("127.0.0.1", ticket_api(in_flight))
    pipeline = make_pipeline(tmp_path)

    pipeline.run(support_api_from_config(child_config(api.origin)))

    assert in_flight.most >= 4
    assert loaded_counts(pipeline)["comments"] == PARENTS * 2 + PARENTS // 3


def test_child_rows_are_those_plain_dlt_loads(tmp_path, hosts):
    loaded: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        api = hosts("127.0.0.1", ticket_api())
        config = child_config(api.origin)
        if name == "plain":  # settle_seconds is support_api's own key
            del config["resources"][0]["endpoint"]["incremental"]["settle_seconds"]
        pipeline = make_pipeline(tmp_path, f"children_{name}")
        pipeline.run(factory(copy.deepcopy(config)))
        loaded[name] = table_rows(pipeline, "comments", "id, body, _tickets_updated_at")
    assert loaded["ours"] == loaded["plain"]
    assert len(loaded["ours"]) == PARENTS * 2 + PARENTS // 3


def test_a_run_reads_the_children_of_changed_parents_only(tmp_path, hosts):
    api = hosts("127.0.0.1", ticket_api())
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(child_config(api.origin)))
    api.seen.clear()

    pipeline.run(support_api_from_config(child_config(api.origin)))

    # the cursor's last value is served again (inclusive filter); dlt drops that ticket as
    # seen, so no comment is asked for
    assert [r.path for r in api.seen] == ["/tickets"]


def test_a_failing_child_names_the_resource_and_loads_nothing_of_it(tmp_path, hosts):
    def route(_host: Host, path: str, _query: dict[str, list[str]]):
        if path == "/tickets":
            return json_page([{"id": i, "updated_at": "2024-01-01T00:00:00Z"} for i in range(6)])
        if path == "/tickets/4/comments":
            return 404, {}, b'{"error": "gone"}'
        return json_page([{"id": int(path.split("/")[2])}])

    api = hosts("127.0.0.1", route)
    config = child_config(api.origin)
    config["resources"][1]["endpoint"]["paginator"] = "single_page"
    pipeline = make_pipeline(tmp_path)

    with pytest.raises(PipelineStepFailed) as raised:
        pipeline.run(support_api_from_config(config))

    message = str(find_cause(raised.value, Exception))
    assert "comments" in message
    assert "/tickets/4/comments" in message


def test_concurrency_1_reads_one_parent_after_another_in_plain_dlts_order(tmp_path, hosts):
    in_flight = InFlight(hold=1)
    api = hosts("127.0.0.1", ticket_api(in_flight))

    make_pipeline(tmp_path).run(support_api_from_config(child_config(api.origin), concurrency=1))

    assert in_flight.most == 1
    # each parent's pages, then the next parent's: the order plain dlt sends them in
    parents_in_order = list(dict.fromkeys(r.path for r in api.seen if r.path != "/tickets"))
    assert parents_in_order == [f"/tickets/{i}/comments" for i in range(PARENTS)]


@pytest.mark.parametrize("value", [0, 65, "16", True])
def test_a_concurrency_out_of_range_names_its_key(value):
    with pytest.raises(ConfigError) as raised:
        support_api_from_config(child_config("https://api.example.com"), concurrency=value)
    assert raised.value.key_path == "concurrency"
