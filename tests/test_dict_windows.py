"""A rest_api-style dict gets the catalogue's time windows where its shape allows them.

An endpoint whose incremental declares both `start_param` and `end_param` on a cursor paged
walk is read in concurrent windows, exactly as a catalogue endpoint with an "updated before"
parameter: every row once, the same rows as plain dlt. Shapes that cannot be cut keep one walk.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sources.support_api import resources as support_resources
from sources.support_api import support_api_from_config
from tests.helpers import FACTORIES, desk_dict_config, make_pipeline, table_ids, table_rows


def windowed_config(server: Any, **incremental: Any) -> dict[str, Any]:
    config = desk_dict_config(server, ["tickets"], primary_key="id")
    config["resources"][0]["endpoint"]["incremental"] = {
        "cursor_path": "updated_at",
        "start_param": "updated_since",
        "end_param": "updated_before",
        "initial_value": "2000-01-01T00:00:00Z",
        **incremental,
    }
    return config


def bounds_sent(server: Any) -> set[tuple[str | None, str | None]]:
    return {
        (r.query.get("updated_since"), r.query.get("updated_before"))
        for r in server.requests(path="/v1/tickets")
    }


def test_a_dict_cursor_endpoint_with_an_end_param_is_read_in_windows(sandbox_factory, tmp_path):
    # 20 ms a request: the walks, not dlt, are the bottleneck, so the range is cut
    server = sandbox_factory(seed=5, size=1500, shape="desk", auth="api_key_query", latency_ms=20)
    pipeline = make_pipeline(tmp_path)

    pipeline.run(support_api_from_config(windowed_config(server)))

    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    assert len(bounds_sent(server)) > 1, "one walk read the whole range"


def test_windowed_dict_rows_are_those_plain_dlt_loads(sandbox_factory, tmp_path):
    rows: dict[str, Any] = {}
    for name, factory in FACTORIES.items():
        server = sandbox_factory(
            seed=6, size=600, shape="desk", auth="api_key_query", latency_ms=10
        )
        config = windowed_config(server)
        pipeline = make_pipeline(tmp_path, f"windows_{name}")
        pipeline.run(factory(copy.deepcopy(config)))
        rows[name] = table_rows(pipeline, "tickets", "id, updated_at, subject")
    assert rows["ours"] == rows["plain"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"end_param": None}, "no end parameter"),
        ({"convert": str}, "a convert callable"),
        ({"cursor_path": "meta.updated_at"}, "a nested cursor"),
    ],
)
def test_shapes_that_cannot_be_cut_keep_one_walk(sandbox, change, why):
    server = sandbox
    config = windowed_config(server, **change)
    if change.get("end_param", "") is None:
        del config["resources"][0]["endpoint"]["incremental"]["end_param"]
    resource = config["resources"][0]
    plan = support_resources._window_plan_of_dict(
        resource, resource["endpoint"]["paginator"], 16, arrow=True
    )
    assert plan is None, why


def test_an_offset_paged_dict_is_fetched_ahead_not_windowed(sandbox):
    server = sandbox
    config = windowed_config(server)
    paginator = {"type": "offset", "limit": 10, "total_path": None}
    resource = config["resources"][0]
    assert support_resources._window_plan_of_dict(resource, paginator, 16, arrow=True) is None
    assert (
        support_resources._window_plan_of_dict(
            resource, resource["endpoint"]["paginator"], 16, arrow=True
        )
        is not None
    )
