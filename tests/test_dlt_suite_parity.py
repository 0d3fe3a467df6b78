"""Parity fixes found by dlt's own rest_api test suite (`nox -s dlt_suite`), one test each."""

from __future__ import annotations

from typing import Any

from sources.support_api import support_api_from_config
from tests.fake_api import Host, json_page, loopback_hosts
from tests.helpers import make_pipeline, table_ids

hosts = loopback_hosts

TOTAL_PAGES = 5


def _numbered_pages(host: Host, path: str, query: dict[str, list[str]]):
    del host, path
    page = int(query.get("page", ["1"])[0])
    rows = [{"id": page * 10 + i} for i in range(5)] if page <= TOTAL_PAGES else []
    return json_page(rows, total_pages=TOTAL_PAGES)


def _source(origin: str, paginator: dict[str, Any], **endpoint: Any):
    return support_api_from_config(
        {
            "client": {"base_url": origin, "paginator": paginator},
            "resources": [{"name": "posts", "endpoint": {"path": "posts", **endpoint}}],
        }
    )


def test_page_number_walk_with_a_total_asks_for_no_page_past_it(hosts, tmp_path):
    host = hosts("127.0.0.1", _numbered_pages)
    source = _source(host.origin, {"type": "page_number", "total_path": "total_pages"})
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)
    assert len(table_ids(pipeline, "posts")) == 5 * TOTAL_PAGES
    pages = [int(seen.query["page"][0]) for seen in host.seen]
    assert sorted(pages) == [1, 2, 3, 4, 5]


def _posts_and_comments(host: Host, path: str, query: dict[str, list[str]]):
    del host
    page = int(query.get("page", ["1"])[0])
    if path == "/posts":
        return json_page([{"id": 1}, {"id": 2}] if page == 1 else [], total_pages=1)
    post = int(path.split("/")[2])
    rows = [{"id": post * 100 + page * 10 + i} for i in range(2)] if page <= 2 else []
    return json_page(rows, total_pages=2)


def test_paginated_child_of_an_incremental_parent_in_parallel(hosts, tmp_path):
    # dlt deep-copies a child's paginator per parent record: the session the paginator
    # fetches ahead with is shared, not copied (it holds a threading.local)
    host = hosts("127.0.0.1", _posts_and_comments)
    paginator = {"type": "page_number", "total_path": "total_pages"}
    source = support_api_from_config(
        {
            "client": {"base_url": host.origin, "paginator": paginator},
            "resources": [
                {
                    "name": "posts",
                    "endpoint": {
                        "path": "posts",
                        "incremental": {"cursor_path": "id", "initial_value": 0},
                    },
                },
                {
                    "name": "comments",
                    "endpoint": {"path": "posts/{resources.posts.id}/comments"},
                    "parallelized": True,
                },
            ],
        }
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source.with_resources("comments"))
    assert table_ids(pipeline, "comments") == [110, 111, 120, 121, 210, 211, 220, 221]
