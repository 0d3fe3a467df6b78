"""Every paginator kind walks to the last page, pinned by a recorded exchange per kind."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit

import pytest

from sources.support_api import support_api_from_config
from tests.cassette_tests.cassette_support import Exchange, exchanges
from tests.helpers import make_pipeline, table_ids

pytestmark = pytest.mark.vcr

SEED = 5
PAGE = 25

PAGINATORS: dict[str, dict[str, Any]] = {
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
    # Numbered walks fetch pages ahead concurrently by default and cancel the ones past the end:
    # whether a cancelled one was already sent is a race, so a cassette cannot pin it. The
    # cassettes pin the walk itself; the fetch-ahead is left to the live sandbox tests.
    "offset": {"type": "offset", "limit": PAGE, "prefetch": 0},
    "page_number": {"type": "page_number", "page_size": PAGE, "prefetch": 0},
    "json_link": {"type": "json_link", "next_url_path": "next"},
    "header_link": {"type": "header_link"},
}


def kinds_config(url: str, kind: str) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "path": f"/kinds/{kind}/tickets",
        "data_selector": "$" if kind == "header_link" else "data",
        "paginator": PAGINATORS[kind],
    }
    if kind in ("json_link", "header_link"):
        endpoint["params"] = {"limit": PAGE}
    return {
        "client": {"base_url": url},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [{"name": "tickets", "endpoint": endpoint}],
    }


def next_reference(kind: str, page: Exchange):
    """The cursor or next link a page hands out, as the cassette holds it."""
    body = page.body
    if kind == "cursor":
        return body["next_cursor"]
    if kind == "nested_cursor":
        return body.get("paging", {}).get("next", {}).get("after")
    if kind == "json_link":
        return body["next"]
    link = page.response_headers.get("Link")
    return link.split(";")[0].strip("<>") if link else None


def followed_reference(kind: str, request: Exchange) -> str:
    """The cursor or link a request followed."""
    if kind == "cursor":
        return request.query["cursor"]
    if kind == "nested_cursor":
        return request.query["after"]
    query = "&".join(f"{k}={v}" for k, v in request.query.items())
    return f"http://127.0.0.1:8765{request.path}?{query}"


@pytest.mark.parametrize("kind", ["cursor", "nested_cursor", "json_link", "header_link"])
def test_cursor_and_link_paginators_follow_every_reference_to_the_last_page(
    sandbox_api, vcr, tmp_path, kind
):
    api = sandbox_api(seed=SEED, size=60, shape="kinds")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(kinds_config(api.url, kind)))

    assert table_ids(pipeline, "tickets") == sorted(api.dataset.ids("tickets"))
    pages = exchanges(vcr)
    assert [(p.method, p.path, p.status) for p in pages] == [
        ("GET", f"/kinds/{kind}/tickets", 200)
    ] * 3
    assert [len(p.body if kind == "header_link" else p.body["data"]) for p in pages] == [
        25,
        25,
        10,
    ]
    assert {p.query["limit"] for p in pages} == {str(PAGE)}
    for page, request in itertools.pairwise(pages):
        reference = next_reference(kind, page)
        assert reference is not None
        if kind in ("json_link", "header_link"):
            assert urlsplit(reference).netloc == "127.0.0.1:8765"
        assert followed_reference(kind, request) == reference
    assert next_reference(kind, pages[-1]) is None


@pytest.mark.parametrize(("size", "requests"), [(60, 3), (50, 3)])
def test_offset_without_total_stops_on_a_short_or_empty_page(
    sandbox_api, vcr, tmp_path, size, requests
):
    api = sandbox_api(seed=SEED, size=size, shape="kinds")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(kinds_config(api.url, "offset")))

    assert table_ids(pipeline, "tickets") == sorted(api.dataset.ids("tickets"))
    pages = exchanges(vcr, "/kinds/offset/tickets")
    assert len(vcr.data) == len(pages) == requests
    assert [p.query["offset"] for p in pages] == [str(PAGE * i) for i in range(requests)]
    assert {p.query["limit"] for p in pages} == {str(PAGE)}
    assert all("total" not in p.body for p in pages)
    assert [len(p.body["data"]) for p in pages][-1] == size % PAGE


def test_page_number_walks_pages_until_a_short_page(sandbox_api, vcr, tmp_path):
    api = sandbox_api(seed=SEED, size=60, shape="kinds")
    pipeline = make_pipeline(tmp_path)
    pipeline.run(support_api_from_config(kinds_config(api.url, "page_number")))

    assert table_ids(pipeline, "tickets") == sorted(api.dataset.ids("tickets"))
    pages = exchanges(vcr)
    assert [p.query.get("page") for p in pages] == ["1", "2", "3"]
    assert {p.query["per_page"] for p in pages} == {str(PAGE)}
    assert [p.body["page"] for p in pages] == [1, 2, 3]
    assert [len(p.body["data"]) for p in pages] == [25, 25, 10]
