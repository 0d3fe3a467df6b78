"""Loopback HTTP server that serves a `Dataset` like a customer-support REST API.

Standard library only: a `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive. Every
response is written in one `sendall` with `Content-Length` set. The server can paginate in
seven styles, authenticate in five modes (including an OAuth2 token endpoint with refresh
token rotation), add latency, rate limit, and inject random or scripted faults.

Nothing here prints or logs a credential: the request log redacts secret query parameters
and error responses never echo what the client sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from secrets import token_hex
from types import TracebackType
from typing import Any, Final, Literal, Self, get_args
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from tests.sandbox.data import (
    TABLES,
    Dataset,
    MutationResult,
    Row,
    RowKey,
    SandboxSecrets,
    Window,
    generate_dataset,
    parse_timestamp,
    sandbox_secrets,
)

logger = logging.getLogger(__name__)

PaginatorKind = Literal[
    "cursor", "nested_cursor", "offset", "page_number", "json_link", "header_link", "single_page"
]
AuthMode = Literal["none", "api_key_query", "api_key_header", "bearer", "oauth2"]
FaultKind = Literal["status", "drop", "malformed", "html", "drop_after_processing"]

PAGINATOR_KINDS: Final[tuple[str, ...]] = get_args(PaginatorKind)
AUTH_MODES: Final[tuple[str, ...]] = get_args(AuthMode)
TOKEN_PATHS: Final[frozenset[str]] = frozenset({"/oauth/token", "/oauth/v1/token"})
"""Paths of the OAuth2 token endpoint (POST, form-encoded)."""
ADMIN_PREFIX: Final = "/_sandbox/"
"""Prefix of the admin routes enabled by `admin_routes=True` (not authenticated, not logged)."""

REDACTED: Final = "***"
_SENSITIVE_PARAMS: Final = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "refresh_token", "client_secret"}
)
_REALM: Final = "support-api-sandbox"
_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_ID_DIGITS: Final = 18
_DROPPED: Final = 0
_MAX_BODY: Final = 1 << 20
_JSON: Final = "application/json"
_MALFORMED_BODY: Final = '{"data": [{"id": 1, "subject": "The export is missing da'
_HTML_BODY: Final = (
    "<!DOCTYPE html><html><head><title>Service unavailable</title></head><body>"
    "<h1>Something went wrong</h1><p>The support desk is temporarily unavailable. "
    "Please try again later.</p></body></html>"
)


@dataclass(frozen=True)
class Route:
    """One list endpoint: which table it serves and how it paginates.

    Empty `page_size_param` and `cursor_param` take the paginator's conventional name:
    `per_page` for page_number (else `limit`), and `after` for nested_cursor (else `cursor`).

    Attributes:
        path: URL path, e.g. `/v1/tickets`.
        table: Dataset table served.
        paginator: Pagination style.
        selector: Key (dotted for nesting) holding the rows; None for a top-level JSON list.
        page_size_param: Query parameter of the page size.
        default_page_size: Page size when the parameter is absent.
        max_page_size: Larger requested sizes are clamped to this.
        cursor_param: Query parameter of the opaque cursor (cursor-like paginators).
        offset_param: Query parameter of the offset (offset paginator).
        page_param: Query parameter of the 1-based page number (page_number paginator).
        updated_since_param: Query parameter of the inclusive lower `updated_at` bound.
        updated_before_param: Query parameter of the exclusive upper `updated_at` bound.
        include_total: Add `total` (offset) or `total_pages` (page_number) to pages.
        total_error: Added to the true row count before it is reported as `total` (offset
            pages with `include_total`): an API whose total lies.
        parent_table: Makes the route nested under a parent: its path holds one `{field}`
            segment, e.g. `/v1/tickets/{ticket_id}/comments`, and a request serves the rows
            of `table` whose `field` equals the id in the path (404 when `parent_table` has
            no row with that id). None: a plain list route.
    """

    path: str
    table: str
    paginator: PaginatorKind = "cursor"
    selector: str | None = "data"
    page_size_param: str = ""
    default_page_size: int = 100
    max_page_size: int = 1000
    cursor_param: str = ""
    offset_param: str = "offset"
    page_param: str = "page"
    updated_since_param: str = "updated_since"
    updated_before_param: str = "updated_before"
    include_total: bool = False
    total_error: int = 0
    parent_table: str | None = None

    def __post_init__(self) -> None:
        """Fills the conventional parameter names and validates the combination.

        Raises:
            ValueError: If the paginator is unknown, a page size is not positive, a
                paginator that needs an object body has no selector, or a path has a
                `{field}` segment without a parent table (or a nested route has not one).
        """
        if len(_PLACEHOLDER.findall(self.path)) != (1 if self.parent_table else 0):
            raise ValueError(f"{self.path}: a nested route (parent_table) has one {{field}}")
        if self.paginator not in PAGINATOR_KINDS:
            raise ValueError(f"unknown paginator {self.paginator!r}; use one of {PAGINATOR_KINDS}")
        if not self.page_size_param:
            size_param = "per_page" if self.paginator == "page_number" else "limit"
            object.__setattr__(self, "page_size_param", size_param)
        if not self.cursor_param:
            cursor = "after" if self.paginator == "nested_cursor" else "cursor"
            object.__setattr__(self, "cursor_param", cursor)
        if self.default_page_size <= 0 or self.max_page_size <= 0:
            raise ValueError("page sizes must be positive")
        needs_object = self.paginator in {"cursor", "nested_cursor", "json_link"}
        if needs_object and self.selector is None:
            raise ValueError(f"paginator {self.paginator!r} needs a selector")

    @property
    def parent_field(self) -> str | None:
        """The field a nested route filters on (its path's `{field}`), None for a list route."""
        found = _PLACEHOLDER.search(self.path)
        return found.group(1) if found else None

    def matches(self, path: str) -> int | None:
        """The parent id a request path names, when the path is this nested route's.

        Args:
            path: A request path, e.g. `/v1/tickets/7/comments`.

        Returns:
            The id (7), None when the path is not this route's (or the route is not nested).
        """
        if self.parent_field is None:
            return None
        prefix, _, suffix = _PLACEHOLDER.split(self.path)
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return None
        segment = path[len(prefix) : len(path) - len(suffix)]
        if not (segment.isascii() and segment.isdecimal()) or len(segment) > _MAX_ID_DIGITS:
            return None
        return int(segment)


def _routes(
    prefix: str, tables: Sequence[str], paginator: PaginatorKind, **options: Any
) -> list[Route]:
    return [Route(f"{prefix}/{table}", table, paginator, **options) for table in tables]


SHAPES: Final[dict[str, list[Route]]] = {
    "desk": _routes("/v1", TABLES, "cursor"),
    "desk_nested": [
        *_routes("/v1", TABLES, "cursor"),
        Route("/v1/tickets/{ticket_id}/comments", "ticket_comments", parent_table="tickets"),
    ],
    "seed000": [Route("/v1/resource", "tickets", "cursor")],
    "seed001": [
        Route("/v1/tickets", "tickets", "offset", selector="tickets"),
        Route("/v1/ticket_comments", "ticket_comments", "offset", selector="comments"),
    ],
    "seed002": [Route("/v1/resource", "customers", "offset")],
    "seed003": [Route("/v1/resource", "tickets", "nested_cursor")],
    "seed004": _routes("", ("organizations", "agents", "tickets"), "offset", default_page_size=50),
    "kinds": [
        Route("/kinds/cursor/tickets", "tickets", "cursor"),
        Route("/kinds/nested_cursor/tickets", "tickets", "nested_cursor"),
        Route("/kinds/offset/tickets", "tickets", "offset"),
        Route("/kinds/page_number/tickets", "tickets", "page_number"),
        Route("/kinds/json_link/tickets", "tickets", "json_link"),
        Route("/kinds/header_link/tickets", "tickets", "header_link", selector=None),
    ],
}
"""Preset route sets, by shape name."""


@dataclass(frozen=True)
class Fault:
    """A failure to serve instead of (or after) the real response.

    Attributes:
        status: HTTP status for `status` faults (default 500); for `malformed` and `html`
            the status of the broken 200-looking response (default 200).
        retry_after: Value of a `Retry-After` header, in seconds.
        kind: `status` sends an error status; `drop` closes the connection without a
            response; `malformed` sends truncated JSON; `html` sends an HTML error page;
            `drop_after_processing` does the real work (e.g. rotates the refresh token) and
            then closes the connection without a response.
        body: Replaces the default body.
        headers: Extra response headers; a `Content-Type` here replaces the default one.
    """

    status: int | None = None
    retry_after: int | None = None
    kind: FaultKind = "status"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


DEFAULT_FAULT_KINDS: Final[tuple[Fault, ...]] = (
    Fault(429, retry_after=1),
    Fault(500),
    Fault(502),
    Fault(503),
    Fault(504),
    Fault(kind="drop"),
)
"""Faults drawn by `fault_rate` unless `fault_kinds` is given."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. Holds no secret values.

    Attributes:
        method: HTTP method.
        path: URL path without the query.
        query: Query parameters (last value wins); secret ones are replaced by `***`.
        status: Response status, 0 when the connection was dropped without a response.
        auth_kind: Credentials presented: `none`, `api_key_query`, `api_key_header`,
            `bearer`, `basic` or `client_secret_post`.
        fault: Kind of the injected fault, None for a normal response.
        at: `time.monotonic()` when the server began to process it: its rate-limit window
            is `floor(at)`. Left out of comparisons.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    auth_kind: str
    fault: str | None = None
    at: float = field(default=0.0, compare=False)


class FakeClock:
    """A manually advanced clock for token expiry tests; pass it as `clock=`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        """Starts the clock.

        Args:
            start: Initial epoch seconds.
        """
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Returns the current fake epoch seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Moves the clock forward.

        Args:
            seconds: How far to move; must not be negative.

        Returns:
            The new time.

        Raises:
            ValueError: If `seconds` is negative.
        """
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            return self._now


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    fault: str | None = None


class _BadRequestError(Exception):
    """A query parameter is invalid; the message is safe to send back."""


def _json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Response(status, body, _JSON, headers or [])


def _error(
    status: int,
    error: str,
    description: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> _Response:
    payload = {"error": error}
    if description is not None:
        payload["error_description"] = description
    return _json_response(status, payload, headers)


def _same(presented: str | None, expected: str) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _snake(status: int) -> str:
    return _reason(status).lower().replace(" ", "_").replace("-", "_") or "error"


def _encode_cursor(key: RowKey, since: str | None, before: str | None) -> str:
    state = {"k": list(key), "s": since, "b": before}
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[RowKey, str | None, str | None]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
        seconds, row_id = state["k"]
        since, before = state["s"], state["b"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise _BadRequestError("invalid cursor") from exc
    ints = isinstance(seconds, int) and isinstance(row_id, int)
    texts = all(bound is None or isinstance(bound, str) for bound in (since, before))
    if not (ints and texts):
        raise _BadRequestError("invalid cursor")
    return (seconds, row_id), since, before


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise _BadRequestError(f"{name} must be an integer") from None


def _wrap(selector: str | None, rows: list[Row]) -> Any:
    if selector is None:
        return rows
    payload: Any = rows
    for part in reversed(selector.split(".")):
        payload = {part: payload}
    return payload


def _redact(query: Mapping[str, str]) -> dict[str, str]:
    return {key: REDACTED if key.lower() in _SENSITIVE_PARAMS else v for key, v in query.items()}


def _http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection; knows the `SandboxServer` it serves for."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, lets `SandboxServer._handle` answer it, writes it in one `sendall`.

    Nagle is off and headers plus body go out in a single write, so keep-alive requests are
    not delayed by delayed ACKs.
    """

    protocol_version = "HTTP/1.1"
    server_version = "support-api-sandbox"
    disable_nagle_algorithm = True
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, opened=True)

    def finish(self) -> None:
        self.server.sandbox._track(self.connection, opened=False)
        try:
            super().finish()
        except OSError:
            logger.debug("client went away before the response was flushed")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class name
        """Silences the default per-request stderr line."""
        del format, args

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        body = b""
        if length:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if not 0 <= size <= _MAX_BODY:
                self.close_connection = True
                self._write(_error(400, "bad_request", "invalid Content-Length"))
                return
            body = self.rfile.read(size)
        elif self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._write(_error(411, "length_required"))
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            response = self.server.sandbox._handle(self.command, self.path, headers, body)
        except Exception:
            logger.exception(
                "sandbox failed to handle %s %s", self.command, urlsplit(self.path).path
            )
            response = _error(500, "internal_error")
        if response.drop:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: _Response) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {_reason(response.status)}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        payload = head if self.command == "HEAD" else head + response.body
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    do_GET = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>
    do_POST = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>
    do_PUT = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>
    do_PATCH = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>
    do_DELETE = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>
    do_HEAD = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>
    do_OPTIONS = _serve  # noqa: N815 - http.server dispatches to do_<METHOD>


class SandboxServer:
    """The fake support desk API, served on loopback from a background thread.

    Knobs (`latency_ms`, `rate_limit_per_second`, `fault_rate`, `fault_kinds`,
    `fault_token_endpoint`, `access_token_ttl`, `rotate_refresh_tokens`, `clock`) are plain
    attributes and can be changed while the server runs.
    """

    def __init__(
        self,
        dataset: Dataset | int | None = None,
        *,
        seed: int | None = None,
        size: int = 300,
        table_sizes: Mapping[str, int] | None = None,
        shape: str = "desk",
        routes: Sequence[Route] | None = None,
        auth: AuthMode = "none",
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        rate_limit_per_second: int | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[Fault] | None = None,
        fault_seed: int = 0,
        fault_token_endpoint: bool = True,
        access_token_ttl: float = 3600,
        rotate_refresh_tokens: bool = True,
        clock: Callable[[], float] = time.time,
        admin_routes: bool = False,
    ) -> None:
        """Configures the server; `start()` binds and serves.

        Args:
            dataset: A dataset to serve, or a seed to generate one from (with `size`).
            seed: Seed when `dataset` is not given; defaults to 7.
            size: Ticket count of a generated dataset.
            table_sizes: Per-table size overrides of a generated dataset.
            shape: Preset route set from `SHAPES`, ignored when `routes` is given.
            routes: Custom routes.
            auth: Authentication mode of the data routes.
            host: Address to bind; loopback by default.
            port: Port to bind; 0 picks a free one.
            latency_ms: Delay added to each request, on the server side.
            rate_limit_per_second: Requests allowed per fixed 1-second window, None for no limit.
            fault_rate: Probability that a request gets a random fault from `fault_kinds`.
            fault_kinds: Faults to draw from; defaults to `DEFAULT_FAULT_KINDS`.
            fault_seed: Seed of the fault draws.
            fault_token_endpoint: Whether random faults also hit the token endpoint.
            access_token_ttl: Lifetime of issued access tokens, in `clock` seconds.
            rotate_refresh_tokens: Issue a new single-use refresh token on each refresh.
            clock: Epoch-seconds clock used for token expiry.
            admin_routes: Serve `/_sandbox/mutate` and `/_sandbox/stats`.

        Raises:
            ValueError: If the shape or auth mode is unknown or two routes share a path.
        """
        if isinstance(dataset, Dataset):
            self._dataset = dataset
        else:
            chosen_seed = dataset if dataset is not None else seed
            self._dataset = generate_dataset(
                7 if chosen_seed is None else chosen_seed, size, table_sizes
            )
        if routes is None:
            if shape not in SHAPES:
                raise ValueError(f"unknown shape {shape!r}; use one of {sorted(SHAPES)}")
            routes = SHAPES[shape]
        if auth not in AUTH_MODES:
            raise ValueError(f"unknown auth mode {auth!r}; use one of {AUTH_MODES}")
        self._routes = tuple(routes)
        self._routes_by_path = {route.path: route for route in self._routes}
        if len(self._routes_by_path) != len(self._routes):
            raise ValueError("two routes share a path")
        self._nested_routes = tuple(route for route in self._routes if route.parent_table)
        for route in self._routes:
            for table in (route.table, route.parent_table):
                if table is not None and table not in self._dataset.tables:
                    raise ValueError(f"route {route.path} serves unknown table {table!r}")
        self.shape = shape if routes is SHAPES.get(shape) else "custom"
        self.auth: AuthMode = auth
        self.host = host
        self._requested_port = port
        self._secrets = sandbox_secrets(self._dataset.seed)

        self.latency_ms = latency_ms
        self.rate_limit_per_second = rate_limit_per_second
        self.fault_rate = fault_rate
        self.fault_kinds: Sequence[Fault] = tuple(fault_kinds or DEFAULT_FAULT_KINDS)
        self.fault_token_endpoint = fault_token_endpoint
        self.access_token_ttl = access_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clock = clock
        self.admin_routes = admin_routes
        self.before_data_request: Callable[[Route], None] | None = None
        """Called before each data page is computed (e.g. to change the data while a sync
        reads it); None does nothing."""

        self._lock = threading.Lock()
        self._fault_rng = random.Random(fault_seed)  # noqa: S311 - reproducible faults
        self._scripted: dict[str, deque[Fault]] = {}
        self._log: list[RequestRecord] = []
        self._status_counts: Counter[tuple[str, int]] = Counter()
        self._window_start = -1
        self._window_count = 0
        self._access_tokens: dict[str, float] = {}
        self._refresh_token: str | None = self._secrets.refresh_token
        self._token_requests: Counter[str] = Counter()
        self._issued_access_tokens = 0
        self._issued_refresh_tokens = 0
        self._connections: set[socket.socket] = set()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._busy_s = 0.0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Binds the port and serves from a daemon thread.

        Returns:
            The server itself.

        Raises:
            RuntimeError: If the server is already running.
        """
        if self._httpd is not None:
            raise RuntimeError("the sandbox server is already running")
        for route in self._nested_routes:
            # built now rather than on the first request, which a benchmark would time
            self._dataset.index(route.table, str(route.parent_field))
        httpd = _HTTPServer((self.host, self._requested_port), self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"sandbox-{httpd.server_address[1]}",
            daemon=True,
        )
        self._httpd = httpd
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, closes open keep-alive connections and frees the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = None
        self._thread = None
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("connection already closed")
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        """Starts the server if needed."""
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stops the server."""
        self.stop()

    def _track(self, connection: socket.socket, *, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: If the server is not running.
        """
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321`, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        """Returns the absolute URL of a path (a leading slash is added if missing).

        Args:
            path: URL path such as `/v1/tickets`.

        Returns:
            The absolute URL.
        """
        return f"{self.url}/{path.lstrip('/')}"

    @property
    def secrets(self) -> SandboxSecrets:
        """The credentials this server accepts (derived from the dataset seed)."""
        return self._secrets

    @property
    def dataset(self) -> Dataset:
        """The served dataset."""
        return self._dataset

    @property
    def routes(self) -> tuple[Route, ...]:
        """The data routes."""
        return self._routes

    def route(self, path_or_table: str) -> Route:
        """Returns a route by path, or the first route serving a table.

        Args:
            path_or_table: A route path or a table name.

        Returns:
            The route.

        Raises:
            KeyError: If no route matches.
        """
        if path_or_table in self._routes_by_path:
            return self._routes_by_path[path_or_table]
        for route in self._routes:
            if route.table == path_or_table:
                return route
        raise KeyError(f"no route for {path_or_table!r}")

    # --- knobs -----------------------------------------------------------------------------------

    def inject(self, path: str, faults: Sequence[Fault]) -> None:
        """Queues faults for the next requests to `path`, one per request, first in first out.

        Args:
            path: Exact URL path (without query), e.g. `/v1/tickets` or `/oauth/token`.
            faults: Faults to apply in order.
        """
        with self._lock:
            self._scripted.setdefault(path, deque()).extend(faults)

    def pending_faults(self, path: str | None = None) -> int:
        """Returns how many scripted faults are still queued (for one path or all)."""
        with self._lock:
            if path is not None:
                return len(self._scripted.get(path, ()))
            return sum(len(queue) for queue in self._scripted.values())

    def clear_faults(self) -> None:
        """Drops every queued scripted fault."""
        with self._lock:
            self._scripted.clear()

    def reseed_faults(self, seed: int) -> None:
        """Restarts the random fault draws from `seed`."""
        with self._lock:
            self._fault_rng = random.Random(seed)  # noqa: S311 - reproducible faults

    def mutate(
        self,
        updates: int,
        creates: int,
        tables: Sequence[str] | None = None,
        seed: int | None = None,
        *,
        same_second: bool = False,
        deletes: int = 0,
        drift: bool = False,
        pending: bool = False,
    ) -> dict[str, MutationResult]:
        """Updates, creates and deletes rows in the dataset (see `Dataset.mutate`).

        Args:
            updates: Existing rows to update per table.
            creates: Rows to create per table.
            tables: Tables to mutate; None means all.
            seed: Seed of the mutation; None uses a call counter.
            same_second: Reuse the latest second instead of new ones (see `Dataset.mutate`).
            deletes: Rows to mark deleted per table (they stay listed, with the table's
                delete marker and a new `updated_at`).
            drift: Updated rows get a new field, a field turned null and a field of another
                type (see `DRIFTERS` in `tests.sandbox.data`).
            pending: Stamp the changes but serve them only after `commit_pending` (a
                transaction committed a moment after it stamped `updated_at`).

        Returns:
            What changed, by table.
        """
        return self._dataset.mutate(
            updates,
            creates,
            seed=seed,
            tables=tables,
            same_second=same_second,
            deletes=deletes,
            drift=drift,
            pending=pending,
        )

    def commit_pending(self, count: int | None = None) -> int:
        """Makes pending changes visible, oldest first (see `Dataset.commit_pending`).

        Args:
            count: Changed rows to commit; None commits all.

        Returns:
            How many rows were committed.
        """
        return self._dataset.commit_pending(count)

    # --- oauth2 state ----------------------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str | None:
        """The one refresh token that works now, None after `revoke_refresh_token`."""
        with self._lock:
            return self._refresh_token

    def revoke_refresh_token(self) -> None:
        """Invalidates the current refresh token, as if the user revoked the app."""
        with self._lock:
            self._refresh_token = None

    def expire_access_tokens(self) -> None:
        """Makes every issued access token expired."""
        with self._lock:
            self._access_tokens = dict.fromkeys(self._access_tokens, -math.inf)

    @property
    def issued_access_tokens(self) -> int:
        """How many access tokens the token endpoint issued."""
        with self._lock:
            return self._issued_access_tokens

    @property
    def issued_refresh_tokens(self) -> int:
        """How many rotated refresh tokens the token endpoint issued."""
        with self._lock:
            return self._issued_refresh_tokens

    @property
    def token_requests(self) -> dict[str, int]:
        """Token endpoint requests by `grant_type` (empty string when missing)."""
        with self._lock:
            return dict(self._token_requests)

    # --- request log -----------------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        """Returns logged requests, oldest first.

        Args:
            path: Only requests to this path; None for all.

        Returns:
            The records.
        """
        with self._lock:
            return [record for record in self._log if path is None or record.path == path]

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Counts logged requests.

        Args:
            path: Only requests to this path; None for all.
            status: Only responses with this status (0 = dropped); None for all.

        Returns:
            The number of matching requests.
        """
        with self._lock:
            return sum(
                count
                for (logged_path, logged_status), count in self._status_counts.items()
                if (path is None or logged_path == path)
                and (status is None or logged_status == status)
            )

    def stats(self, *, reset_peak: bool = False) -> dict[str, Any]:
        """Returns request counts per path and status, token requests per grant, concurrency.

        A nested route's requests are counted under its template
        (`/v1/tickets/{ticket_id}/comments`), not one entry per parent; `count(path)` takes
        the concrete paths.

        Args:
            reset_peak: Start a new `peak_in_flight` after reading it (a benchmark reads the
                stats before a run with it, and the run's peak after).

        Returns:
            `{"total": n, "requests": {path: {status: n}}, "token_requests": {grant: n},
            "in_flight": n, "peak_in_flight": n, "busy_s": s}`, statuses as strings so the
            value is JSON-ready. `peak_in_flight` is the most data requests handled at once
            (latency included) since the last reset; `busy_s` the sum of their handling times
            (grows by the mean number in flight per second).
        """
        with self._lock:
            by_path: dict[str, dict[str, int]] = {}
            for (path, status), count in sorted(self._status_counts.items()):
                statuses = by_path.setdefault(self._route_key(path), {})
                statuses[str(status)] = statuses.get(str(status), 0) + count
            document = {
                "total": sum(self._status_counts.values()),
                "requests": by_path,
                "token_requests": dict(self._token_requests),
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
                "busy_s": round(self._busy_s, 6),
            }
            if reset_peak:
                self._peak_in_flight = self._in_flight
            return document

    def _route_key(self, path: str) -> str:
        """The path a request is counted under in `stats`: a nested route's template."""
        for route in self._nested_routes:
            if route.matches(path) is not None:
                return route.path
        return path

    def reset_log(self) -> None:
        """Forgets logged requests and counters (not the OAuth2 state)."""
        with self._lock:
            self._log.clear()
            self._status_counts.clear()
            self._token_requests.clear()

    # --- request handling ------------------------------------------------------------------------

    def _handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        """Serves one request. Called from handler threads."""
        split = urlsplit(target)
        path = split.path or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        if self.admin_routes and path.startswith(ADMIN_PREFIX):
            return self._admin(method, path, query)
        entered = time.monotonic()
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            if self.latency_ms > 0:
                time.sleep(self.latency_ms / 1000)
            arrived = time.monotonic()
            response = self._process(method, path, query, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._busy_s += time.monotonic() - entered
        record = RequestRecord(
            method=method,
            path=path,
            query=_redact(query),
            status=_DROPPED if response.drop else response.status,
            auth_kind=self._auth_kind(path, query, headers, body),
            fault=response.fault,
            at=arrived,
        )
        with self._lock:
            self._log.append(record)
            self._status_counts[path, record.status] += 1
        return response

    def _process(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        route = self._routes_by_path.get(path)
        parent_id: int | None = None
        if route is None:
            for nested in self._nested_routes:
                parent_id = nested.matches(path)
                if parent_id is not None:
                    route = nested
                    break
        is_token = path in TOKEN_PATHS
        with self._lock:
            queue = self._scripted.get(path)
            scripted = queue.popleft() if queue else None
        if scripted is not None and scripted.kind != "drop_after_processing":
            return self._fault_response(scripted)
        if route is None and not is_token:
            return _error(404, "not_found", f"no endpoint at {path}")
        allowed = "GET" if route is not None else "POST"
        if method != allowed:
            return _error(405, "method_not_allowed", headers=[("Allow", allowed)])
        if scripted is None and (route is not None or self.fault_token_endpoint):
            random_fault = self._draw_fault()
            if random_fault is not None:
                return self._fault_response(random_fault)
        if route is not None:
            response = self._serve_data(route, query, headers, path, parent_id)
        else:
            response = self._serve_token(headers, body)
        if scripted is not None:
            return _Response(response.status, drop=True, fault=scripted.kind)
        return response

    def _draw_fault(self) -> Fault | None:
        if self.fault_rate <= 0 or not self.fault_kinds:
            return None
        with self._lock:
            if self._fault_rng.random() >= self.fault_rate:
                return None
            return self._fault_rng.choice(self.fault_kinds)

    @staticmethod
    def _fault_response(fault: Fault) -> _Response:
        if fault.kind in {"drop", "drop_after_processing"}:
            return _Response(_DROPPED, drop=True, fault=fault.kind)
        headers = [(name, value) for name, value in fault.headers.items()]
        content_type = next(
            (value for name, value in headers if name.lower() == "content-type"), None
        )
        headers = [(name, value) for name, value in headers if name.lower() != "content-type"]
        if fault.retry_after is not None:
            headers.append(("Retry-After", str(fault.retry_after)))
        if fault.kind == "malformed":
            status = fault.status or 200
            body = fault.body if fault.body is not None else _MALFORMED_BODY
            default_type = _JSON
        elif fault.kind == "html":
            status = fault.status or 200
            body = fault.body if fault.body is not None else _HTML_BODY
            default_type = "text/html; charset=utf-8"
        else:
            status = fault.status or 500
            body = fault.body if fault.body is not None else json.dumps({"error": _snake(status)})
            default_type = _JSON
        return _Response(
            status, body.encode(), content_type or default_type, headers, fault=fault.kind
        )

    @staticmethod
    def _auth_kind(
        path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> str:
        scheme = headers.get("authorization", "").partition(" ")[0].lower()
        if scheme in {"bearer", "basic"}:
            return scheme
        if "x-api-key" in headers:
            return "api_key_header"
        if "api_key" in query:
            return "api_key_query"
        if path in TOKEN_PATHS and b"client_secret=" in body:
            return "client_secret_post"
        return "none"

    # --- data routes -----------------------------------------------------------------------------

    def _serve_data(
        self,
        route: Route,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        path: str,
        parent_id: int | None = None,
    ) -> _Response:
        limit_headers: list[tuple[str, str]] = []
        if self.rate_limit_per_second is not None:
            allowed, reset, limit_headers = self._take_rate_token(self.rate_limit_per_second)
            if not allowed:
                retry = [("Retry-After", str(reset))]
                return _error(429, "rate_limited", "too many requests", limit_headers + retry)
        denied = self._check_auth(query, headers)
        if denied is not None:
            denied.headers.extend(limit_headers)
            return denied
        where: tuple[str, Any] | None = None
        if route.parent_table is not None and parent_id is not None:
            try:
                self._dataset.get(route.parent_table, parent_id)
            except KeyError:
                return _error(404, "not_found", f"no {route.parent_table} {parent_id}")
            where = (str(route.parent_field), parent_id)
        hook = self.before_data_request
        if hook is not None:
            hook(route)
        try:
            payload, extra_headers = self._page(route, query, path, where)
        except _BadRequestError as exc:
            return _error(400, "bad_request", str(exc), limit_headers)
        return _json_response(200, payload, limit_headers + extra_headers)

    def _take_rate_token(self, limit: int) -> tuple[bool, int, list[tuple[str, str]]]:
        now = time.monotonic()
        window = math.floor(now)
        with self._lock:
            if window != self._window_start:
                self._window_start = window
                self._window_count = 0
            allowed = self._window_count < limit
            if allowed:
                self._window_count += 1
            remaining = max(0, limit - self._window_count)
        reset = max(1, math.ceil(window + 1 - now))
        headers = [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(reset)),
        ]
        return allowed, reset, headers

    def _check_auth(self, query: Mapping[str, str], headers: Mapping[str, str]) -> _Response | None:
        mode = self.auth
        if mode == "none":
            return None
        if mode == "oauth2":
            return self._check_access_token(_bearer(headers))
        if mode == "api_key_query":
            accepted = _same(query.get("api_key"), self._secrets.api_key)
        elif mode == "api_key_header":
            accepted = _same(headers.get("x-api-key"), self._secrets.api_key)
        else:
            accepted = _same(_bearer(headers), self._secrets.bearer_token)
        if accepted:
            return None
        challenge = [("WWW-Authenticate", f'Bearer realm="{_REALM}"')] if mode == "bearer" else []
        return _error(401, "unauthorized", headers=challenge)

    def _check_access_token(self, token: str | None) -> _Response | None:
        if token is None:
            return _error(
                401, "unauthorized", headers=[("WWW-Authenticate", f'Bearer realm="{_REALM}"')]
            )
        now = self.clock()
        with self._lock:
            expires_at = self._access_tokens.get(token)
        if expires_at is not None and now < expires_at:
            return None
        return _error(
            401, "unauthorized", headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')]
        )

    def _page(
        self,
        route: Route,
        query: Mapping[str, str],
        path: str,
        where: tuple[str, Any] | None = None,
    ) -> tuple[Any, list[tuple[str, str]]]:
        """One page of a route.

        `path` is the request's own (a nested route's names its parent: next links keep it)
        and `where` the nested route's filter, None for a list route.
        """
        limit = _int_param(query, route.page_size_param, route.default_page_size)
        if limit <= 0:
            raise _BadRequestError(f"{route.page_size_param} must be a positive integer")
        limit = min(limit, route.max_page_size)  # also clamps a default above the maximum
        since = query.get(route.updated_since_param) or None
        before = query.get(route.updated_before_param) or None
        kind = route.paginator
        if kind in {"cursor", "nested_cursor", "json_link", "header_link"}:
            return self._cursor_page(route, query, limit, since, before, path, where)
        if kind == "single_page":
            count = self._dataset.count(route.table)
            everything = self._window(route, count, 0, since, before, where=where)
            return _wrap(route.selector, everything.rows), []
        if kind == "offset":
            offset = _int_param(query, route.offset_param, 0)
            if offset < 0:
                raise _BadRequestError(f"{route.offset_param} must be >= 0")
            window = self._window(route, limit, offset, since, before, where=where)
            payload = _wrap(route.selector, window.rows)
            if route.include_total and isinstance(payload, dict):
                payload["total"] = max(0, window.total + route.total_error)
            return payload, []
        page = _int_param(query, route.page_param, 1)
        if page < 1:
            raise _BadRequestError(f"{route.page_param} must be >= 1")
        window = self._window(route, limit, (page - 1) * limit, since, before, where=where)
        payload = _wrap(route.selector, window.rows)
        if isinstance(payload, dict):
            payload["page"] = page
            if route.include_total:
                payload["total_pages"] = math.ceil(window.total / limit)
        return payload, []

    def _window(
        self,
        route: Route,
        limit: int,
        offset: int,
        since: str | None,
        before: str | None,
        after: RowKey | None = None,
        where: tuple[str, Any] | None = None,
    ) -> Window:
        for bound, name in (
            (since, route.updated_since_param),
            (before, route.updated_before_param),
        ):
            if bound is not None:
                try:
                    parse_timestamp(bound)
                except ValueError:
                    raise _BadRequestError(f"{name} must be an ISO-8601 timestamp") from None
        return self._dataset.window(
            route.table,
            limit,
            offset=offset,
            after=after,
            updated_since=since,
            updated_before=before,
            where=where,
        )

    def _cursor_page(
        self,
        route: Route,
        query: Mapping[str, str],
        limit: int,
        since: str | None,
        before: str | None,
        path: str,
        where: tuple[str, Any] | None,
    ) -> tuple[Any, list[tuple[str, str]]]:
        after: RowKey | None = None
        token = query.get(route.cursor_param)
        if token:
            # The cursor carries the filters of the first page: they win over the query.
            after, since, before = _decode_cursor(token)
        window = self._window(route, limit, 0, since, before, after, where)
        next_token = None
        if window.has_more and window.last_key is not None:
            next_token = _encode_cursor(window.last_key, since, before)
        next_url = None
        if next_token is not None:
            params = urlencode({route.cursor_param: next_token, route.page_size_param: limit})
            next_url = f"{self.url}{path}?{params}"
        payload = _wrap(route.selector, window.rows)
        if route.paginator == "cursor":
            payload["next_cursor"] = next_token
        elif route.paginator == "nested_cursor":
            if next_token is not None:
                payload["paging"] = {"next": {"after": next_token, "link": next_url}}
        elif route.paginator == "json_link":
            payload["next"] = next_url
        elif next_url is not None:
            return payload, [("Link", f'<{next_url}>; rel="next"')]
        return payload, []

    # --- oauth2 token endpoint -------------------------------------------------------------------

    def _serve_token(self, headers: Mapping[str, str], body: bytes) -> _Response:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type", "")
        with self._lock:
            self._token_requests[grant] += 1
        if not self._client_authenticated(headers, form):
            challenge = [("WWW-Authenticate", f'Basic realm="{_REALM}"')]
            return _error(401, "invalid_client", "client authentication failed", challenge)
        no_store = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
        if grant == "client_credentials":
            with self._lock:
                payload = self._issue_access_token()
            return _json_response(200, payload, no_store)
        if grant == "refresh_token":
            presented = form.get("refresh_token")
            with self._lock:
                current = self._refresh_token
                if current is None or not _same(presented, current):
                    return _error(
                        400,
                        "invalid_grant",
                        "the refresh token is invalid, expired, revoked or already used",
                        no_store,
                    )
                payload = self._issue_access_token()
                if self.rotate_refresh_tokens:
                    self._refresh_token = f"sbxrefresh-{token_hex(16)}"
                    self._issued_refresh_tokens += 1
                    payload["refresh_token"] = self._refresh_token
            return _json_response(200, payload, no_store)
        if not grant:
            return _error(400, "invalid_request", "grant_type is required", no_store)
        return _error(400, "unsupported_grant_type", headers=no_store)

    def _client_authenticated(self, headers: Mapping[str, str], form: Mapping[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            client_id, sep, client_secret = decoded.partition(":")
            if not sep:
                return False
            client_id, client_secret = unquote_plus(client_id), unquote_plus(client_secret)
        else:
            client_id = form.get("client_id", "")
            client_secret = form.get("client_secret", "")
        id_ok = _same(client_id, self._secrets.client_id)
        secret_ok = _same(client_secret, self._secrets.client_secret)
        return id_ok and secret_ok

    def _issue_access_token(self) -> dict[str, Any]:
        """Issues an access token. Called with the lock held."""
        token = f"sbxaccess-{token_hex(16)}"
        self._access_tokens[token] = self.clock() + self.access_token_ttl
        self._issued_access_tokens += 1
        ttl = self.access_token_ttl
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
        }

    # --- admin routes ----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, query: Mapping[str, str]) -> _Response:
        if path == f"{ADMIN_PREFIX}stats":
            if method != "GET":
                return _error(405, "method_not_allowed", headers=[("Allow", "GET")])
            return _json_response(200, self.stats(reset_peak=bool(query.get("reset_peak"))))
        if path == f"{ADMIN_PREFIX}mutate":
            if method != "POST":
                return _error(405, "method_not_allowed", headers=[("Allow", "POST")])
            try:
                updates = _int_param(query, "updates", 0)
                creates = _int_param(query, "creates", 0)
                deletes = _int_param(query, "deletes", 0)
                seed_text = query.get("seed")
                seed = int(seed_text) if seed_text else None
                tables = [name for name in query.get("tables", "").split(",") if name] or None
                results = self.mutate(updates, creates, tables=tables, seed=seed, deletes=deletes)
            except (_BadRequestError, ValueError, KeyError) as exc:
                return _error(400, "bad_request", str(exc))
            changed = {
                table: {
                    "updated_ids": list(result.updated_ids),
                    "created_ids": list(result.created_ids),
                    "deleted_ids": list(result.deleted_ids),
                }
                for table, result in results.items()
            }
            return _json_response(200, {"mutated": changed})
        return _error(404, "not_found", f"no admin endpoint at {path}")
