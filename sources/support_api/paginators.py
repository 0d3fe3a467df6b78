"""Paginators for the API shapes support_api speaks.

dlt's paginators do the paging; these subclasses add what support APIs need and dlt lacks:
a page-size parameter on cursor endpoints, a stop rule for offset and page-number endpoints
that return no total, and loop detection for cursors and next links.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from dlt.common import jsonpath
from dlt.sources.helpers.rest_client.paginators import (
    BasePaginator,
    BaseReferencePaginator,
    HeaderCursorPaginator,
    HeaderLinkPaginator,
    JSONLinkPaginator,
    JSONResponseCursorPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    RangePaginator,
    SinglePagePaginator,
)
from dlt.sources.helpers.rest_client.redaction import sanitize_url
from dlt.sources.rest_api.config_setup import PAGINATOR_MAP
from requests import Request, Response

from .errors import PaginationError
from .http_policy import PacedSession

DEFAULT_PREFETCH_PAGES = 16
"""Most pages an offset or page-number walk fetches ahead, concurrently (`PagePrefetch`)."""

FIRST_PREFETCH_PAGES = 2
"""Pages fetched ahead after the first full page, before the walk shows it waits for them."""

GROW_AFTER_WAIT_S = 0.01
"""A walk that waited this long for a page fetched ahead fetches further ahead: longer than
fetching and parsing a page takes without latency (at 5 ms, walks on the sandbox with none
grew all the same), so the API's latency is what it waited for."""

PAGES_PER_PAGE_AHEAD = 4
"""A walk fetches at most one page ahead per this many pages read (2 at least), so the pages
fetched past the end of a walk stay under a quarter of those it read (at 8, 50k tickets at
20 ms took 3.1 s to extract instead of 2.7 s)."""


class _RepeatGuard:
    """Remembers the page references already followed and refuses to follow one twice."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def reset(self) -> None:
        """Forgets every reference; called when a paginator starts a new walk."""
        self._seen.clear()

    def check(self, reference: str | None, kind: str, response: Response) -> None:
        """Raises if `reference` was followed before in this walk.

        Args:
            reference: The next cursor or URL taken from `response`, or None on the last page.
            kind: What the reference is, for the message ("cursor", "next link").
            response: The response the reference came from.

        Raises:
            PaginationError: When the API hands out a reference it already gave.
        """
        if reference is None:
            return
        key = str(reference)
        if key in self._seen:
            raise PaginationError(
                f"The API returned the same {kind} twice, so pagination would loop forever."
                f" Response from {sanitize_url(response.url)} repeated a {kind} already"
                f" followed ({len(self._seen)} pages read). Check the paginator settings"
                " (cursor_path, cursor_param) or report the API bug."
            )
        self._seen.add(key)


class PagePrefetch:
    """Fetches the next pages of a numbered walk (offset or page number) ahead of dlt's loop.

    dlt's paging loop asks for one page at a time. When a page comes back full, the pages
    after it are requested in the background, in order; the loop's next `send` then finds its
    response ready. How far ahead grows with need: `FIRST_PREFETCH_PAGES` at first, doubled
    each time the loop waited `GROW_AFTER_WAIT_S` or longer for a page fetched ahead (the
    API's latency holds the walk back), up to `depth` and to one page ahead per
    `PAGES_PER_PAGE_AHEAD` pages read. It does not grow while the rate limit holds requests
    back (more would only wait for budget). A walk that ends returns nothing early: pages
    past the end that were fetched ahead are dropped (fewer than it was fetching ahead). The
    first page is never fetched ahead, so a run with nothing new costs one request.
    """

    def __init__(self, depth: int) -> None:
        """Sets how many pages may be fetched ahead; `session` is attached by the builder.

        Args:
            depth: Most pages fetched ahead (0 disables fetching ahead).
        """
        self.depth = depth
        self.session: PacedSession | None = None
        self.armed = False
        self._scheduled: dict[int, str | None] = {}
        """URL fetched ahead by page value (None: the session had it on its way already)."""
        self._ahead = min(depth, FIRST_PREFETCH_PAGES)
        self._pages = 0
        self.end: int | None = None
        """The first page value past the total the API reported (None: no total known)."""

    @property
    def ahead(self) -> int:
        """Pages the walk fetches ahead now."""
        return self._ahead

    def reset(self) -> None:
        """Forgets the URLs of the previous walk; nothing is fetched ahead of the first page."""
        self._scheduled = {}
        self.armed = False
        self._ahead = min(self.depth, FIRST_PREFETCH_PAGES)
        self._pages = 0
        self.end = None

    def see_total(self, walk: RangePaginator, response: Response) -> None:
        """Remembers where the total in `response` (`walk.total_path`) ends the walk.

        dlt's paginator reads the total to stop, but keeps it to itself; pages at or past
        `total + base_index` are then never fetched ahead.

        Args:
            walk: The offset or page-number paginator.
            response: The page it just read.
        """
        if walk.total_path is None:
            return
        values = jsonpath.find_values(walk.total_path, response.json())
        total = values[0] if values else None
        if isinstance(total, int | str) and str(total).strip().lstrip("-").isdigit():
            self.end = int(total) + walk.base_index

    def follow(self, walk: RangePaginator, request: Request) -> None:
        """Called once `walk` has pointed `request` at its next page.

        Fetches the pages after it ahead when the last page came back full, or drops what was
        fetched ahead when the walk has ended.

        Args:
            walk: The offset or page-number paginator.
            request: The request for the next page, as dlt's loop will send it.
        """
        self._pages += 1
        if not walk.has_next_page:
            self.finish()
            return
        param = walk.param_name
        if (
            not self.armed
            or self.session is None
            or self.depth <= 0
            or not param
            or walk.param_body_path
            or request.method.upper() != "GET"
        ):
            return
        self._grow(self.session)
        for i in range(self._ahead):
            value = walk.current_value + i * walk.value_step
            if walk.maximum_value is not None and value >= walk.maximum_value:
                break
            if self.end is not None and value >= self.end:
                break
            if value in self._scheduled:
                # on its way since an earlier page: preparing the request again (auth, URL,
                # about 0.2 ms) only to find its URL scheduled was 3 of every 4 prepares
                continue
            ahead = copy.copy(request)
            ahead.params = {**(request.params or {}), param: value}
            self._scheduled[value] = self.session.prefetch(ahead)

    def _grow(self, session: PacedSession) -> None:
        """Fetches further ahead when the loop waited for the page it was just handed.

        Not while the rate limit holds requests back: there the budget, not the latency,
        decides how fast pages come.
        """
        most = min(self.depth, max(FIRST_PREFETCH_PAGES, self._pages // PAGES_PER_PAGE_AHEAD))
        if self._ahead >= most or session.waited() < GROW_AFTER_WAIT_S:
            return
        budget = session.pacer.budget()
        if budget is not None and budget[0] < 1:
            return
        self._ahead = min(most, 2 * self._ahead)

    def finish(self) -> None:
        """Drops what was fetched ahead and will not be asked for."""
        urls = [url for url in self._scheduled.values() if url is not None]
        if self.session is not None and urls:
            self.session.discard(urls)
        self._scheduled = {}


class _NoRepeats(BaseReferencePaginator):
    """Mixin for reference paginators: a cursor or link that repeats raises, never loops."""

    reference_kind: ClassVar[str] = "cursor"

    @property
    def _guard(self) -> _RepeatGuard:
        guard = self.__dict__.get("_repeat_guard")
        if guard is None:
            guard = self.__dict__["_repeat_guard"] = _RepeatGuard()
        return guard

    def init_request(self, request: Request) -> None:
        """Starts a walk: forgets the references followed before."""
        self._guard.reset()
        self._has_next_page = True
        super().init_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        """Reads the next reference and refuses one that was already followed."""
        # the dlt paginator after this mixin in the MRO reads the reference
        concrete: Any = super()
        concrete.update_state(response, data)
        if self._has_next_page:
            self._guard.check(self._next_reference, self.reference_kind, response)


class _AsksPageSize(BasePaginator):
    """Mixin: a walk's first request asks for the page size, `?<limit_param>=<limit>`.

    Cursor walks keep the query parameters on later pages; link paginators follow the URL the
    API gives for the next page, which carries the page size the first request asked for.
    """

    limit: int | None = None
    limit_param: str | None = None

    def init_request(self, request: Request) -> None:
        """Starts a walk as the paginators after this mixin do, then asks for the page size."""
        super().init_request(request)
        if self.limit is not None and self.limit_param:
            request.params = {**(request.params or {}), self.limit_param: self.limit}


class CursorPaginator(_AsksPageSize, _NoRepeats, JSONResponseCursorPaginator):
    """Cursor in the JSON body, sent back as a query parameter, with an optional page size.

    Sample response (`cursor_path="paging.next.after"`, `cursor_param="after"`, `limit=100`)::

        {"data": [{"id": 1}, ...], "paging": {"next": {"after": "MTAw"}}}

    The next request is `?after=MTAw&limit=100`. The walk stops when the cursor is missing or
    empty (or per `stop_after_empty_page` / `has_more_path`), and raises `PaginationError` when
    a cursor repeats.
    """

    def __init__(
        self,
        cursor_path: jsonpath.TJsonPath = "next_cursor",
        cursor_param: str | None = None,
        cursor_body_path: str | None = None,
        *,
        limit: int | None = None,
        limit_param: str = "limit",
        stop_after_empty_page: bool = False,
        has_more_path: jsonpath.TJsonPath | None = None,
    ) -> None:
        """Configures the cursor and the page size.

        Args:
            cursor_path: JSON path of the next cursor in the response.
            cursor_param: Query parameter that carries the cursor. Defaults to `cursor`.
            cursor_body_path: Where to put the cursor in a JSON request body instead.
            limit: Page size to ask for; sent as `limit_param` on every request if set.
            limit_param: Query parameter that carries the page size.
            stop_after_empty_page: Stop on an empty page even if a cursor is present.
            has_more_path: JSON path of a boolean telling whether more pages exist.
        """
        super().__init__(
            cursor_path=cursor_path,
            cursor_param=cursor_param,
            cursor_body_path=cursor_body_path,
            stop_after_empty_page=stop_after_empty_page,
            has_more_path=has_more_path,
        )
        self.limit = limit
        self.limit_param = limit_param


class OffsetLimitPaginator(OffsetPaginator):
    """Offset and limit in the query; stops on a short or empty page when there is no total.

    Sample response (`limit=100`, no `total_path`)::

        {"tickets": [{"id": 1}, ...]}

    Requests go `?offset=0&limit=100`, `?offset=100&limit=100`, ... and stop after a page with
    fewer than `limit` items. When `total_path` is given the total is honoured as in dlt.
    The limit must not exceed the API's own maximum page size: an API that silently caps the
    page size returns short pages, and the walk would stop early.
    """

    def __init__(
        self,
        limit: int,
        offset: int = 0,
        offset_param: str = "offset",
        limit_param: str = "limit",
        total_path: jsonpath.TJsonPath | None = None,
        maximum_offset: int | None = None,
        *,
        stop_after_empty_page: bool = True,
        stop_after_short_page: bool = True,
        has_more_path: jsonpath.TJsonPath | None = None,
        prefetch: int = DEFAULT_PREFETCH_PAGES,
    ) -> None:
        """Configures offset paging.

        Args:
            limit: Page size, sent as `limit_param`.
            offset: First offset.
            offset_param: Query parameter for the offset.
            limit_param: Query parameter for the page size.
            total_path: JSON path of the total item count, if the API returns one.
            maximum_offset: Stop before this offset.
            stop_after_empty_page: Stop on an empty page.
            stop_after_short_page: Stop on a page with fewer than `limit` items.
            has_more_path: JSON path of a boolean telling whether more pages exist.
            prefetch: Most pages fetched ahead, concurrently, while a walk continues (0: none;
                `PagePrefetch` says how far ahead it goes).
        """
        super().__init__(
            limit=limit,
            offset=offset,
            offset_param=offset_param,
            limit_param=limit_param,
            total_path=total_path,
            maximum_offset=maximum_offset,
            stop_after_empty_page=stop_after_empty_page,
            has_more_path=has_more_path,
        )
        self.stop_after_short_page = stop_after_short_page
        self.prefetch = PagePrefetch(prefetch)
        self._received = 0

    def init_request(self, request: Request) -> None:
        """Starts a walk at the first offset."""
        self.prefetch.reset()
        self._received = 0
        super().init_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        """Advances the offset and stops on an empty or short page.

        A total is checked, not trusted: more rows than the total raise `PaginationError`,
        and a walk the total would end on a full page asks for one more page.

        Raises:
            PaginationError: When the API served more rows than its total says exist.
        """
        self._received += len(data or [])
        super().update_state(response, data)
        self.prefetch.see_total(self, response)
        full_page = data is not None and len(data) >= self.limit
        if self.total_path is not None:
            values = jsonpath.find_values(self.total_path, response.json())
            total = values[0] if values else None
            if isinstance(total, int) and self._received > total + self.initial_value:
                raise PaginationError(
                    f"The API's total ({total}) is lower than the rows it already served"
                    f" ({self._received}) at {sanitize_url(response.url)}: its total cannot"
                    " be trusted, so rows could be missed. Remove `total_path` to page until a"
                    " short or empty page."
                )
            at_cap = self.maximum_value is not None and self.current_value >= self.maximum_value
            if full_page and not self._has_next_page and not at_cap:
                self._has_next_page = True  # a full last page may not be the last: check
        if self.stop_after_short_page and data is not None and not full_page:
            self._has_next_page = False
        self.prefetch.armed = self._has_next_page

    def update_request(self, request: Request) -> None:
        """Points the request at the next page and fetches the ones after it ahead."""
        super().update_request(request)
        self.prefetch.follow(self, request)


class PageNumberSizePaginator(PageNumberPaginator):
    """Page number in the query, with an optional page size and the same stop rules as offset.

    Sample response (`page_size=100`, no `total_path`)::

        {"data": [{"id": 1}, ...], "page": 3}

    Requests go `?page=1&per_page=100`, `?page=2&per_page=100`, ... until an empty page, or a
    page shorter than `page_size` when it is set.
    """

    def __init__(
        self,
        base_page: int = 1,
        page: int | None = None,
        page_param: str = "page",
        total_path: jsonpath.TJsonPath | None = None,
        maximum_page: int | None = None,
        *,
        page_size: int | None = None,
        page_size_param: str = "per_page",
        stop_after_empty_page: bool = True,
        has_more_path: jsonpath.TJsonPath | None = None,
        prefetch: int = DEFAULT_PREFETCH_PAGES,
    ) -> None:
        """Configures page-number paging.

        Args:
            base_page: Number of the first page (0 or 1).
            page: Page to start from; defaults to `base_page`.
            page_param: Query parameter for the page number.
            total_path: JSON path of the total page count, if the API returns one.
            maximum_page: Stop before this page.
            page_size: Items per page; sent as `page_size_param` and used to stop on a short page.
            page_size_param: Query parameter for the page size.
            stop_after_empty_page: Stop on an empty page.
            has_more_path: JSON path of a boolean telling whether more pages exist.
            prefetch: Most pages fetched ahead, concurrently, while a walk continues (0: none;
                `PagePrefetch` says how far ahead it goes).
        """
        super().__init__(
            base_page=base_page,
            page=base_page if page is None else page,
            page_param=page_param,
            total_path=total_path,
            maximum_page=maximum_page,
            stop_after_empty_page=stop_after_empty_page,
            has_more_path=has_more_path,
        )
        self.page_size = page_size
        self.page_size_param = page_size_param
        self.prefetch = PagePrefetch(prefetch)

    def init_request(self, request: Request) -> None:
        """Starts at the first page and sets the page size."""
        self.prefetch.reset()
        super().init_request(request)
        if self.page_size is not None:
            request.params = {**(request.params or {}), self.page_size_param: self.page_size}

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        """Advances the page and stops on an empty or short page."""
        super().update_state(response, data)
        self.prefetch.see_total(self, response)
        if self.page_size is not None and data is not None and len(data) < self.page_size:
            self._has_next_page = False
        self.prefetch.armed = self._has_next_page

    def update_request(self, request: Request) -> None:
        """Points the request at the next page and fetches the ones after it ahead."""
        super().update_request(request)
        self.prefetch.follow(self, request)


def _page_size_settings(
    limit: int | None, limit_param: str | None
) -> tuple[int | None, str | None]:
    """Checks that a page size comes with the parameter that sends it.

    Raises:
        ValueError: For a `limit` without a `limit_param`: it would be silently ignored.
    """
    if limit is not None and not limit_param:
        msg = (
            "`limit` needs `limit_param`, the query parameter the API reads the page size from"
            " (e.g. `page_size`, `per_page`): without it the page size is never sent."
        )
        raise ValueError(msg)
    return limit, limit_param


class NextLinkPaginator(_AsksPageSize, _NoRepeats, JSONLinkPaginator):
    """Next-page URL in the JSON body (`next_url_path`); raises when a link repeats.

    Sample response (`next_url_path="next"`, `limit=1000`, `limit_param="page_size"`)::

        {"data": [{"id": 1}, ...], "next": "https://api.example.com/v1/tickets?page_token=x"}

    The first request is `?page_size=1000`; the next ones are the links as given.
    """

    reference_kind = "next link"

    def __init__(
        self,
        next_url_path: jsonpath.TJsonPath = "next",
        *,
        limit: int | None = None,
        limit_param: str | None = None,
    ) -> None:
        """Configures where the link is and, optionally, the page size to ask for.

        Args:
            next_url_path: JSON path of the next page's URL in the response.
            limit: Page size to ask for on the first request.
            limit_param: Query parameter the API reads the page size from (`page_size`).
        """
        super().__init__(next_url_path=next_url_path)
        self.limit, self.limit_param = _page_size_settings(limit, limit_param)


class LinkHeaderPaginator(_AsksPageSize, _NoRepeats, HeaderLinkPaginator):
    """Next-page URL in the `Link` header (`<url>; rel="next"`); raises when a link repeats.

    Sample response headers (`limit=1000`, `limit_param="per_page"`: first request
    `?per_page=1000`)::

        Link: <https://api.example.com/v1/tickets?page=3&per_page=1000>; rel="next"
    """

    reference_kind = "next link"

    def __init__(
        self,
        links_next_key: str = "next",
        *,
        limit: int | None = None,
        limit_param: str | None = None,
    ) -> None:
        """Configures the link relation and, optionally, the page size to ask for.

        Args:
            links_next_key: The `rel` of the next page's link.
            limit: Page size to ask for on the first request.
            limit_param: Query parameter the API reads the page size from (`per_page`).
        """
        super().__init__(links_next_key=links_next_key)
        self.limit, self.limit_param = _page_size_settings(limit, limit_param)


class HeaderCursorLoopPaginator(_AsksPageSize, _NoRepeats, HeaderCursorPaginator):
    """Cursor in a response header (`cursor_key`), sent back as `cursor_param`; no repeats.

    Sample response headers (`cursor_key="next"`)::

        next: MTAw
    """

    def __init__(
        self,
        cursor_key: str = "next",
        cursor_param: str = "cursor",
        *,
        limit: int | None = None,
        limit_param: str | None = None,
    ) -> None:
        """Configures the cursor and, optionally, the page size to ask for.

        Args:
            cursor_key: Response header holding the next cursor.
            cursor_param: Query parameter that carries the cursor.
            limit: Page size to ask for, on every request (the query is kept).
            limit_param: Query parameter the API reads the page size from.
        """
        super().__init__(cursor_key=cursor_key, cursor_param=cursor_param)
        self.limit, self.limit_param = _page_size_settings(limit, limit_param)


PAGINATOR_TYPES: dict[str, type[BasePaginator]] = {
    "cursor": CursorPaginator,
    "offset": OffsetLimitPaginator,
    "page_number": PageNumberSizePaginator,
    "json_link": NextLinkPaginator,
    "json_response": NextLinkPaginator,
    "header_link": LinkHeaderPaginator,
    "header_cursor": HeaderCursorLoopPaginator,
    "single_page": SinglePagePaginator,
}
"""Paginator `type` names accepted in configs, mapped to the class that implements each.

`auto` is also accepted and left to dlt's detection."""


def paginator_class(kind: str) -> type[BasePaginator] | None:
    """The class of a paginator `type` name: ours, or one registered with dlt.

    A name given to dlt's `register_paginator` (`dlt.sources.rest_api.config_setup`) is
    accepted as plain dlt accepts it, and built with the registered class.

    Args:
        kind: The `type` of a paginator config.

    Returns:
        The class, or None for an unknown name.
    """
    return PAGINATOR_TYPES.get(kind) or PAGINATOR_MAP.get(kind)


def paginator_types() -> list[str]:
    """Every accepted paginator `type` name: ours and those registered with dlt."""
    return sorted({*PAGINATOR_TYPES, *PAGINATOR_MAP})
