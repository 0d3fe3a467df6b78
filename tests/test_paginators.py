"""Every paginator kind walks a sandbox endpoint to the last page, through the source."""

from __future__ import annotations

import json
import math

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from requests import Response

from sources.support_api import PaginationError, support_api_from_config
from sources.support_api.config import make_paginator
from sources.support_api.paginators import FIRST_PREFETCH_PAGES, CursorPaginator
from tests.helpers import find_cause, make_pipeline, table_ids
from tests.sandbox import Fault

PAGE = 40

KINDS: dict[str, dict[str, object]] = {
    "cursor": {
        "type": "cursor",
        "cursor_path": "next_cursor",
        "cursor_param": "cursor",
        "limit": PAGE,
    },
    "nested_cursor": {
        "type": "cursor",
        "cursor_path": "paging.next.after",
        "cursor_param": "after",
        "limit": PAGE,
    },
    "offset": {"type": "offset", "limit": PAGE},
    "page_number": {"type": "page_number", "page_size": PAGE},
    "json_link": {"type": "json_link", "next_url_path": "next"},
    "header_link": {"type": "header_link"},
}


def kinds_config(url: str, kind: str, paginator) -> dict:
    endpoint = {
        "path": f"/kinds/{kind}/tickets",
        "data_selector": "$" if kind == "header_link" else "data",
        "paginator": paginator,
    }
    if kind in ("json_link", "header_link"):
        endpoint["params"] = {"limit": PAGE}
    return {
        "client": {"base_url": url},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [{"name": "tickets", "endpoint": endpoint}],
    }


@pytest.mark.parametrize("size", [150, 160])
@pytest.mark.parametrize("kind", list(KINDS))
def test_paginator_reads_every_page_once(sandbox_factory, tmp_path, kind, size):
    server = sandbox_factory(seed=5, size=size, shape="kinds")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(kinds_config(server.url, kind, KINDS[kind])))

    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    requests = server.requests(path=f"/kinds/{kind}/tickets")
    queries = [tuple(sorted(r.query.items())) for r in requests]
    assert len(set(queries)) == len(queries), "a page was fetched twice"
    pages = math.ceil(size / PAGE)
    if kind in ("offset", "page_number") and size % PAGE == 0:
        pages += 1  # no total: the walk ends on the first empty page
    if kind in ("json_link", "header_link"):
        assert len(requests) >= 2
    elif kind in ("offset", "page_number"):
        # pages after a full one are fetched ahead: 2 at first, and no more than one per 4
        # pages read, so at most one page past the end of so short a walk
        assert pages <= len(requests) <= pages + FIRST_PREFETCH_PAGES - 1
    else:
        assert len(requests) == pages
    if kind == "offset":
        offsets = sorted(int(r.query["offset"]) for r in requests)
        assert offsets[:pages] == [PAGE * i for i in range(pages)]
        assert {r.query["limit"] for r in requests} == {str(PAGE)}


@pytest.mark.parametrize("kind", ["offset", "page_number"])
def test_numbered_walk_without_prefetch_is_strictly_sequential(sandbox_factory, tmp_path, kind):
    server = sandbox_factory(seed=5, size=150, shape="kinds")
    paginator: dict[str, object] = {**KINDS[kind], "prefetch": 0}
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(kinds_config(server.url, kind, paginator)))
    assert table_ids(pipeline, "tickets") == sorted(server.dataset.ids("tickets"))
    param = "offset" if kind == "offset" else "page"
    sent = [int(r.query[param]) for r in server.requests(path=f"/kinds/{kind}/tickets")]
    assert sent == ([0, 40, 80, 120] if kind == "offset" else [1, 2, 3, 4])


def test_first_page_is_never_fetched_ahead(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=5, size=30, shape="kinds")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(kinds_config(server.url, "offset", KINDS["offset"])))
    assert len(server.requests(path="/kinds/offset/tickets")) == 1


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (
            "cursor",
            {"data": [{"id": 1, "updated_at": "2024-01-01T00:00:00Z"}], "next_cursor": "same"},
        ),
        (
            "nested_cursor",
            {"data": [{"id": 1}], "paging": {"next": {"after": "same"}}},
        ),
        ("json_link", {"data": [{"id": 1}], "next": "/kinds/json_link/tickets?page_token=same"}),
    ],
)
def test_repeating_cursor_or_link_raises_instead_of_looping(sandbox_factory, tmp_path, kind, body):
    server = sandbox_factory(seed=5, size=50, shape="kinds")
    path = f"/kinds/{kind}/tickets"
    server.inject(path, [Fault(status=200, body=json.dumps(body))] * 3)
    pipeline = make_pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(support_api_from_config(kinds_config(server.url, kind, KINDS[kind])))
    error = find_cause(failure.value, PaginationError)
    assert error is not None, failure.value
    assert "twice" in str(error)
    assert server.url.split("//")[1] in str(error)
    assert len(server.requests(path=path)) == 2


def test_paginators_of_one_config_share_compiled_paths_not_state():
    config = {"type": "cursor", "cursor_path": "meta.next", "cursor_param": "cursor", "limit": 5}
    first, second = make_paginator(config), make_paginator(config)
    assert isinstance(first, CursorPaginator)
    assert isinstance(second, CursorPaginator)
    # jsonpath_ng builds a parser per compile: each window's paginator reuses one path
    assert first.cursor_path is second.cursor_path
    response = Response()
    response._content = json.dumps({"meta": {"next": "abc"}, "data": [{"id": 1}]}).encode()
    first.update_state(response, [{"id": 1}])
    assert first.has_next_page
    assert first._next_reference == "abc"
    assert second._next_reference is None
