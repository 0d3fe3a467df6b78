"""How support_api talks HTTP: retries, pacing, pages fetched ahead, body checks, redaction.

Retries are dlt's (`dlt.sources.helpers.requests.Client`, built on tenacity): this module turns
an endpoint's `error_handler` into such a client, mounts a transport under its retries that
paces every attempt from rate-limit headers (`PacedAdapter`), and wraps it per thread
(`PacedSession`) to serve prefetched pages. Response hooks turn error statuses
and unusable bodies into typed errors naming the resource and the redacted URL.

The transport also keeps the credentials where they belong: a request to a host the source's
`OriginPolicy` does not allow is refused before it is sent (next links, child URLs and every
redirect hop alike), and an error of a failed request leaves this module with its message,
request and response cleaned of secrets (`redaction`), before dlt wraps it into its own errors
and writes it to the pipeline's trace.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Self, cast
from urllib.parse import parse_qsl, urlsplit

from dlt.common import json, jsonpath
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.requests.retry import wait_exponential_retry_after
from dlt.sources.helpers.rest_client.redaction import sanitize_url
from requests import PreparedRequest, Request, RequestException, Response, Session
from requests import exceptions as requests_errors
from requests.adapters import HTTPAdapter
from requests.exceptions import TooManyRedirects
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from .errors import (
    ConfigError,
    HTTPStatusError,
    RedirectLoopError,
    ResponseError,
    UntrustedHostError,
    truncate_body,
)
from .origins import Origin, OriginPolicy
from .redaction import REDACTOR, detached_copy, scrub_exception
from .settings import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_STATUS_CODES,
    MAX_CONCURRENCY,
)

ERROR_HANDLER_KEYS = frozenset(
    {"retry_on_status_codes", "max_retries", "backoff_factor", "max_retry_delay", "timeout"}
)
"""Keys accepted in an endpoint's `error_handler` block."""

_HTTP_STATUSES = range(100, 600)
_EPOCH_THRESHOLD = 1_000_000_000
"""A rate-limit reset above this is an epoch timestamp, not a number of seconds."""
_STATUS_HINTS: dict[int, str] = {
    401: "The credentials were refused: check the API key or OAuth2 client settings.",
    403: "The credentials lack permission for this endpoint: check the token's scopes/role.",
    404: "The endpoint does not exist: check `base_url` and the resource `path`.",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Retry rules for one endpoint.

    Attributes:
        retry_on_status_codes: Statuses retried with backoff; everything else fails at once.
        max_retries: Retries after the first attempt (3 means up to 4 requests).
        backoff_factor: Waits are `backoff_factor * 2 ** (retry - 1)` seconds: 2, 4, 8 for 2.
        max_retry_delay: Cap in seconds for a single wait, `Retry-After` included.
        timeout: Connect and read timeout of every request, in seconds.
    """

    retry_on_status_codes: tuple[int, ...] = DEFAULT_RETRY_STATUS_CODES
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY
    timeout: float = DEFAULT_REQUEST_TIMEOUT

    @classmethod
    def from_config(
        cls, block: Mapping[str, Any], key_path: str, base: RetryPolicy | None = None
    ) -> RetryPolicy:
        """Validates an `error_handler` block and builds the policy.

        Args:
            block: The `error_handler` mapping as written in the config.
            key_path: Where the block sits, for error messages.
            base: Policy whose values fill keys the block does not set.

        Returns:
            The policy.

        Raises:
            ConfigError: On an unknown key or a value of the wrong type or range.
        """
        if not isinstance(block, Mapping):
            raise ConfigError(key_path, f"expected a mapping, got `{type(block).__name__}`.")
        unknown = set(block) - ERROR_HANDLER_KEYS
        if unknown:
            raise ConfigError(
                f"{key_path}.{min(unknown)}", "unknown key.", accepted=ERROR_HANDLER_KEYS
            )
        base = base or cls()
        codes = block.get("retry_on_status_codes", base.retry_on_status_codes)
        if not isinstance(codes, list | tuple) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c in _HTTP_STATUSES for c in codes
        ):
            raise ConfigError(
                f"{key_path}.retry_on_status_codes",
                f"expected a list of HTTP status codes (100-599), got `{codes!r}`.",
            )
        max_retries = block.get("max_retries", base.max_retries)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(
                f"{key_path}.max_retries", f"expected an integer >= 0, got `{max_retries!r}`."
            )
        numbers = {}
        for key in ("backoff_factor", "max_retry_delay", "timeout"):
            value = block.get(key, getattr(base, key))
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key_path}.{key}", f"expected a number >= 0, got `{value!r}`.")
            numbers[key] = float(value)
        if numbers["timeout"] == 0:
            raise ConfigError(f"{key_path}.timeout", "expected a number > 0, got `0`.")
        return cls(
            retry_on_status_codes=tuple(codes),
            max_retries=max_retries,
            backoff_factor=numbers["backoff_factor"],
            max_retry_delay=numbers["max_retry_delay"],
            timeout=numbers["timeout"],
        )


CONNECTION_ERRORS: Final = (
    requests_errors.ConnectionError,
    requests_errors.Timeout,
    requests_errors.ChunkedEncodingError,
)
"""Failures to reach a server that retrying may cure: the ones dlt's `Client` retries."""


def retrying(
    policy: RetryPolicy,
    retry_on: tuple[type[BaseException], ...],
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """The retry loop of a policy, as dlt's `Client` runs it for data requests.

    For calls that do not go through a data session (the token endpoint's): the same
    exponential backoff (`backoff_factor * 2 ** (retry - 1)` seconds) honouring `Retry-After`
    up to `max_retry_delay` (dlt's `wait_exponential_retry_after`), the same number of
    attempts, and the error of the last attempt raised as it is.

    Args:
        policy: The retry rules.
        retry_on: Exceptions that are retried (everything else is raised at once).
        before_sleep: Called before each wait (to log it).

    Returns:
        A tenacity `Retrying` to iterate over.
    """
    return Retrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_exponential_retry_after(
            multiplier=policy.backoff_factor, max=policy.max_retry_delay
        ),
        stop=stop_after_attempt(policy.max_retries + 1),
        before_sleep=before_sleep,
        reraise=True,
    )


class _SharedRuntime:
    """A runtime object shared by every copy of the config that reaches it (not copied).

    dlt deep-copies an endpoint's paginator for each parent record of a dependent resource,
    and a paginator fetching ahead holds the session; pools, locks and `threading.local`
    cannot be copied (`cannot pickle '_thread._local' object`), and a copy would not share
    the rate-limit budget or the connections anyway. `copy.deepcopy` returns the object.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Returns this object: it is shared, not copied."""
        del memo
        return self


@dataclass
class SessionPool(_SharedRuntime):
    """One retrying `requests` session per distinct policy, shared by the resources using it.

    Connections are pooled per policy (keep-alive across pages and resources) in the policy's
    `PacedAdapter`, which also paces every attempt on the policy's rate-limit pacer.
    """

    max_connections: int = MAX_CONCURRENCY
    """Connections kept open per host: as many as the requests a run can have in flight
    (time windows of parallel resources, pages fetched ahead), so that each is reused, not
    closed when the pool is full and opened again (a TLS handshake each on a real API)."""
    prefetch_threads: int = 8
    origins: OriginPolicy | None = None
    """Where the sessions may send requests; anywhere when None."""
    _clients: dict[RetryPolicy, Client] = field(default_factory=dict)
    _adapters: dict[RetryPolicy, PacedAdapter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _prefetch_pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        """Creates the prefetch threads (started lazily by the executor)."""
        self._prefetch_pool = ThreadPoolExecutor(
            max_workers=self.prefetch_threads, thread_name_prefix="support_api_prefetch"
        )

    def session_for(self, policy: RetryPolicy, resource_name: str = "") -> Session:
        """Returns a session that retries per `policy`, one real session per thread.

        Args:
            policy: The retry rules.
            resource_name: The resource the session serves, named in its errors.

        Returns:
            A `requests` session whose `send` retries with backoff and honours `Retry-After`.
            Resources extracted in parallel each use their own thread's session (a
            `requests.Session` is not thread-safe); connections come from one shared pool.
        """
        with self._lock:
            client = self._clients.get(policy)
            if client is None:
                client = Client(
                    request_timeout=policy.timeout,
                    max_connections=self.max_connections,
                    raise_for_status=False,
                    status_codes=policy.retry_on_status_codes,
                    request_max_attempts=policy.max_retries + 1,
                    request_backoff_factor=policy.backoff_factor,
                    request_max_retry_delay=policy.max_retry_delay,
                    respect_retry_after_header=True,
                    retry_condition=retry_malformed_body,
                )
                self._clients[policy] = client
            adapter = self._adapter_for(policy)
        return cast("Session", PacedSession(client, adapter, self._prefetch_pool, resource_name))

    def _adapter_for(self, policy: RetryPolicy) -> PacedAdapter:
        """The policy's paced transport (made on first use; call with the lock held)."""
        adapter = self._adapters.get(policy)
        if adapter is None:
            adapter = PacedAdapter(
                RateLimitPacer(), origins=self.origins, pool_maxsize=self.max_connections
            )
            self._adapters[policy] = adapter
        return adapter

    def pace_user_session(self, session: Session, policy: RetryPolicy) -> None:
        """Sends a user's own session (`client.session`) through the policy's paced transport.

        The session is used as given (its class, `send`, headers, hooks), as plain dlt uses
        it; only where it has requests' default transport for `https://` or `http://` is the
        policy's mounted instead, so the rate-limit pacing and the check of where
        credentials may go still apply. A transport the user mounted is left alone. dlt's
        retries come with dlt's own sessions: a session of the user's retries only as it
        was built to.

        Args:
            session: The user's session.
            policy: The retry policy of the resource using it.
        """
        with self._lock:
            adapter = self._adapter_for(policy)
        mounted = False
        for prefix in ("https://", "http://"):
            current = session.adapters.get(prefix)
            if current is adapter:
                mounted = True
            elif type(current) is HTTPAdapter:
                session.mount(prefix, adapter)
                mounted = True
        if mounted and self.origins is not None:
            keep_credentials_on_allowed_redirects(session, self.origins)


def keep_credentials_on_allowed_redirects(session: Session, origins: OriginPolicy) -> None:
    """Lets `Authorization` survive a redirect to an allowed host, and only to one.

    requests drops the header on a redirect to any other host; hosts that are not allowed are
    refused by the transport before anything is sent, so only allowed ones reach this.

    Args:
        session: A session sending through the paced transport.
        origins: Where the source's credentials may go.
    """
    # requests offers no other hook for it: its redirect loop calls this method
    session.should_strip_auth = (  # type: ignore[method-assign]
        lambda old, new: not origins.keeps_credentials(old, new)
    )


class RateLimitPacer(_SharedRuntime):
    """Spaces requests so they stay under the API's rate limit instead of bouncing off 429s.

    Every response (retried attempts included) reports its `X-RateLimit-Remaining` and
    `X-RateLimit-Reset` (seconds until the window resets, or an epoch timestamp); a 429 its
    `Retry-After`. A request is sent only while the budget left
    in the current window exceeds the requests already out (time windows and parallel
    resources share one pacer), so the window is used up to its last request and no further.
    When it is spent, every thread using the same policy waits for the window to reset.

    The reset moment is the earliest `now + X-RateLimit-Reset` seen in the window: APIs round
    the reset up to whole seconds, and the earliest response bounds it most tightly. Waiting
    a whole rounded second after the last request would leave most of a 1-second window idle.
    When a window turns, one request probes the new budget before the others follow: requests
    sent in the last window may already have been counted in this one. An answer to a request
    sent in the last window is not read as this window's budget. An answer showing more budget
    than the lowest seen, to a request sent after that lowest one was answered, means the
    server's window turned early: the pacer follows it at once. An answer is dated by the
    moment its request was let out (`acquire`), which is never after it was sent; the
    request's `elapsed` time is not used for that, as a thread that reads the answer late
    would make the request look sent later than it was.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        max_wait: float = DEFAULT_MAX_RETRY_DELAY,
    ) -> None:
        """Creates a pacer with nothing to wait for.

        Args:
            clock: Monotonic seconds.
            sleep: How to wait, for tests: one call stands for the whole wait. By default
                a wait ends early when a response arrives or a request finishes.
            max_wait: Cap on one wait, in seconds.
        """
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._changed = threading.Condition()
        self._resume_at = -math.inf
        self._in_flight = 0
        self._remaining: float | None = None
        self._seen_at: float | None = None
        self._window_start = -math.inf
        self._window_end = math.inf
        self._sent = threading.local()

    def acquire(self) -> None:
        """Blocks until the rate limit allows another request, then counts it as sent."""
        with self._changed:
            while (delay := self._delay()) > 0:
                if self._sleep is not None:
                    # an injected sleep (tests) stands for the whole wait
                    self._changed.release()
                    try:
                        self._sleep(min(delay, self._max_wait))
                    finally:
                        self._changed.acquire()
                    break
                # a response or a finished request may free budget before the delay is over
                self._changed.wait(min(delay, self._max_wait))
            self._in_flight += 1
            # the answers this thread observes until `release` are to a request sent after now
            self._sent.at = self._clock()

    def _delay(self) -> float:
        """Seconds until the next request may go out (called with the lock held)."""
        now = self._turn_window()
        delay = self._resume_at - now
        if delay <= 0 and self._remaining is not None and self._in_flight >= self._remaining:
            delay = self._window_end - now
        return delay

    def _turn_window(self) -> float:
        """Starts a new window once the current one is over (called with the lock held).

        Returns:
            The clock time.
        """
        now = self._clock()
        if now >= self._window_end:
            # one request probes the new budget: requests sent in the last window may have been
            # counted in this one, which only an answer from this window tells
            self._window_start, self._window_end = now, math.inf
            self._remaining, self._seen_at = 1, None
        return now

    def budget(self) -> tuple[float, float] | None:
        """What the rate limit leaves: requests not yet spent, and seconds until it resets.

        Returns:
            The requests left in the window beyond those in flight (at least 0) and the
            seconds until the window resets (`inf` while unknown); None until an answer has
            carried rate-limit headers.
        """
        with self._changed:
            now = self._turn_window()
            if self._remaining is None:
                return None
            return max(0.0, self._remaining - self._in_flight), max(0.0, self._window_end - now)

    def release(self) -> None:
        """Counts a request answered (or failed) and wakes the threads waiting for budget."""
        with self._changed:
            self._in_flight -= 1
            self._sent.at = None
            self._changed.notify_all()

    def observe(self, response: Response, *_args: Any, **_kwargs: Any) -> None:
        """Learns the budget from a response's headers (usable as a `requests` response hook).

        Args:
            response: Any response, 429s and other errors included.
        """
        headers = response.headers
        retry_after = None
        if response.status_code == 429:  # noqa: PLR2004 - Too Many Requests
            retry_after = retry_after_seconds(headers.get("Retry-After"))
        remaining = _seconds(headers.get("X-RateLimit-Remaining"))
        reset = _seconds(headers.get("X-RateLimit-Reset"))
        with self._changed:
            now = self._turn_window()
            if retry_after is not None:
                self._resume_at = max(self._resume_at, now + min(retry_after, self._max_wait))
            sent_at = getattr(self._sent, "at", None)
            if sent_at is None:  # a response the pacer did not let out: its own timing
                sent_at = now - response.elapsed.total_seconds()
            if remaining is not None and sent_at >= self._window_start:
                # without a reset header, look again in a second
                ends = now + min(reset if reset is not None else 1.0, self._max_wait)
                if self._remaining is None or self._seen_at is None:
                    # the window's first answer
                    self._window_end = min(self._window_end, ends)
                    self._remaining, self._seen_at = remaining, now
                elif remaining > self._remaining and sent_at >= self._seen_at:
                    # sent after the lowest count was answered, yet more is left: the server's
                    # window has turned before the reset this pacer expected
                    self._window_start, self._window_end = self._seen_at, ends
                    self._remaining, self._seen_at = remaining, now
                else:
                    self._window_end = min(self._window_end, ends)
                    if remaining < self._remaining:
                        self._remaining, self._seen_at = remaining, now
            self._changed.notify_all()


_RETRY_AFTER_PARSER: Final = Retry()
"""urllib3's parser of `Retry-After` (seconds or an HTTP date), the one dlt's own borrows."""


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: a number (decimals too) or an HTTP date.

    Args:
        value: The header's value, if any.

    Returns:
        The seconds (0 for a date already past), or None for no or an unreadable header.
    """
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return float(_RETRY_AFTER_PARSER.parse_retry_after(value))
    except InvalidHeader:
        return None


def _seconds(value: str | None) -> float | None:
    """Parses a numeric header; epoch timestamps become seconds from now."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number > _EPOCH_THRESHOLD:
        return max(0.0, number - time.time())
    return number


class PacedAdapter(_SharedRuntime, HTTPAdapter):
    """The transport of one policy's sessions: every attempt waits on the rate-limit pacer.

    Mounted below dlt's retries, so a retried attempt (and a redirect) waits for budget as a
    first attempt does, and every answer, 429s included, updates the budget before the
    attempt stops counting as in flight. Its connection pool is shared by the policy's
    sessions (one per thread).
    """

    def __init__(
        self, pacer: RateLimitPacer, origins: OriginPolicy | None = None, **kwargs: Any
    ) -> None:
        """Creates the transport.

        Args:
            pacer: The policy's rate-limit pacer.
            origins: Where requests may go; anywhere when None.
            **kwargs: As `requests.adapters.HTTPAdapter` takes them (`pool_maxsize`...).
        """
        super().__init__(**kwargs)
        self.pacer = pacer
        self.origins = origins

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        """Sends one attempt once the pacer lets it out, then reads its rate-limit headers.

        Args:
            request: The prepared request.
            *args: As `HTTPAdapter.send` takes them.
            **kwargs: As `HTTPAdapter.send` takes them.

        Returns:
            The response.

        Raises:
            UntrustedHostError: The request would carry credentials to a host they do not
                belong to; nothing was sent.
            RequestException: The request failed (connection refused, DNS, timeout, TLS...):
                the same kind of error, its message redacted, without the request (which
                holds the credentials) or the chain of urllib3 errors (which repeat the URL).
        """
        url = request.url or ""
        if self.origins is not None and (refusal := self.origins.refusal(url)):
            raise UntrustedHostError(refusal, Origin.of(url).netloc)
        self.pacer.acquire()
        try:
            response = super().send(request, *args, **kwargs)
            self.pacer.observe(response)
        except RequestException as exc:
            failure = detached_copy(exc)
        else:
            return response
        finally:
            self.pacer.release()
        # raised outside the `except` block: the original (secrets and all) is not its context
        raise failure


class PacedSession(_SharedRuntime):
    """What dlt's `RESTClient` gets as its session.

    Forwards to the calling thread's retrying session of a dlt `Client` (a `requests.Session`
    is not thread-safe) with the policy's `PacedAdapter` mounted, and answers from pages
    prefetched by a paginator when it has one for the URL.
    """

    raise_for_status = False

    def __init__(
        self,
        client: Client,
        adapter: PacedAdapter,
        pool: ThreadPoolExecutor,
        resource_name: str = "",
    ) -> None:
        """Wraps one policy's client.

        Args:
            client: dlt's retrying client for the policy.
            adapter: The policy's transport, which paces every attempt.
            pool: Threads that fetch prefetched pages.
            resource_name: The resource served, named in errors.
        """
        self._client = client
        self._resource_name = resource_name
        self._adapter = adapter
        self.pacer = adapter.pacer
        self._pool = pool
        self._prefetched: dict[str, Future[Response]] = {}
        self._prefetch_lock = threading.Lock()
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}
        self._waited = threading.local()

    def _session(self) -> Session:
        """The calling thread's retrying session, sending through the paced transport."""
        session: Session = self._client.session
        if session.adapters.get("https://") is not self._adapter:
            # dlt makes one session per thread (and anew when its config changes)
            session.mount("https://", self._adapter)
            session.mount("http://", self._adapter)
            if self._adapter.origins is not None:
                keep_credentials_on_allowed_redirects(session, self._adapter.origins)
        return session

    def __getattr__(self, name: str) -> Any:
        """Everything else (prepare_request, merge_environment_settings...) is the session's."""
        return getattr(self._session(), name)

    def merge_environment_settings(
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """`requests.Session.merge_environment_settings`, read once per scheme and host.

        requests scans every environment variable for proxy settings on each request (about
        0.2 ms, twice per page). The environment does not change during a run, so the answer
        for a host is kept; explicit settings are merged as requests merges them.
        """
        session: Session = self._client.session
        if proxies or stream is not None or verify is not None or cert is not None:
            return dict(session.merge_environment_settings(url, proxies, stream, verify, cert))
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        settings = self._environment.get(key)
        if settings is None:
            settings = dict(session.merge_environment_settings(url, {}, None, None, None))
            self._environment[key] = settings
        # callers add their own keys: hand out copies
        return {**settings, "proxies": dict(settings.get("proxies") or {})}

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Sends a request (or hands over its prefetched response), pacing and retrying.

        Raises:
            UntrustedHostError: Naming the resource and the host that was refused.
            RedirectLoopError: Naming the resource, the redacted URL and the hops.
            Exception: Any other failure, with secrets scrubbed from it and its chain.
        """
        try:
            return self._send_or_take(request, **kwargs)
        except UntrustedHostError as exc:
            failure: BaseException = UntrustedHostError(self._name(str(exc)), exc.host)
        except TooManyRedirects as exc:
            failure = self._redirect_loop(request, exc)
        except Exception as exc:
            scrub_exception(exc)
            raise
        raise failure

    def _name(self, message: str) -> str:
        return f"Resource `{self._resource_name}`: {message}" if self._resource_name else message

    def _redirect_loop(self, request: PreparedRequest, exc: TooManyRedirects) -> RedirectLoopError:
        """The error for a redirect loop, naming the redacted URLs it went through."""
        response = exc.response
        hops = [hop.url for hop in [*response.history, response]] if response is not None else []
        shown = " -> ".join(REDACTOR.redact(sanitize_url(url)) for url in hops[:4])
        return RedirectLoopError(
            self._name(
                f"{request.method} {REDACTOR.redact(sanitize_url(request.url or ''))} was"
                f" redirected {len(hops)} times without reaching an answer, a redirect loop"
                f" ({shown} -> ...). Check the resource's `path` and the API's `base_url`."
            )
        )

    def _send_or_take(self, request: PreparedRequest, **kwargs: Any) -> Response:
        with self._prefetch_lock:
            future = self._prefetched.pop(request.url or "", None)
        if future is None:
            self._waited.seconds = 0.0
            return self._send_paced(request, **kwargs)
        start = time.monotonic()
        try:
            return future.result()
        finally:
            self._waited.seconds = time.monotonic() - start

    def waited(self) -> float:
        """Seconds the calling thread's last `send` waited for a page fetched ahead."""
        return cast("float", getattr(self._waited, "seconds", 0.0))

    def _send_paced(self, request: PreparedRequest, **kwargs: Any) -> Response:
        return self._session().send(request, **kwargs)

    def prefetch(self, request: Request) -> str | None:
        """Starts fetching `request` in the background; `send` of the same URL gets the result.

        Args:
            request: The request as dlt's paging loop would send it.

        Returns:
            The URL the response will be filed under, or None if it was already scheduled.
        """
        prepared = self._client.session.prepare_request(request)
        url = prepared.url or ""
        with self._prefetch_lock:
            if url in self._prefetched:
                return None
            settings = self.merge_environment_settings(url, {}, None, None, None)
            self._prefetched[url] = self._pool.submit(self._send_paced, prepared, **settings)
        return url

    def discard(self, urls: list[str]) -> None:
        """Drops prefetches nobody will ask for (pages past the end) and closes their responses."""
        with self._prefetch_lock:
            futures = [f for url in urls if (f := self._prefetched.pop(url, None)) is not None]
        for future in futures:
            future.cancel()
            future.add_done_callback(_close_response)


def _close_response(future: Future[Response]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def retry_malformed_body(response: Response | None, exception: BaseException | None) -> bool:
    """Retry predicate for dlt's `Client`: a 2xx body that was cut off is sent again.

    Args:
        response: The response, if any.
        exception: The exception raised while sending, if any.

    Returns:
        True when the exception is a retryable `ResponseError`.
    """
    del response
    return isinstance(exception, ResponseError) and exception.retryable


@dataclass(frozen=True)
class BodyRules:
    """What a resource's 2xx bodies must hold.

    Attributes:
        data_selector: Where the records are; None or `$` for the whole body.
        expects_list: The selector must hold a list (paged endpoints return lists).
        required_fields: Top-level fields every record must carry a value for (the primary
            key and the incremental cursor): a record without them would fail later in dlt,
            after the incremental state had already moved past it.
    """

    data_selector: str | None = None
    expects_list: bool = False
    required_fields: tuple[str, ...] = ()


def body_check_hook(resource_name: str, rules: BodyRules) -> Callable[..., None]:
    """Builds a response hook that parses a 2xx body once and checks it can be used.

    The parsed body is kept on the response, so dlt's data extraction and the paginator do not
    parse the page again. A body that is not JSON raises `ResponseError`: retryable when it
    looks cut off, not when it is an HTML page (a login or error page served with 200). A
    configured data selector that the body lacks, a selector that holds something else than
    a list of records on a paged endpoint, and a record without its primary key or cursor value
    raise too, instead of loading nothing, or the wrong thing.

    Args:
        resource_name: Resource the endpoint belongs to.
        rules: What the bodies must hold.

    Returns:
        A response hook.
    """
    data_selector = rules.data_selector
    selector = jsonpath.compile_path(data_selector) if data_selector not in (None, "$") else None

    def check_body(response: Response, *_args: Any, **_kwargs: Any) -> None:
        if not response.ok or response.status_code == 204:  # noqa: PLR2004 - No Content
            return
        if response.is_redirect:  # requests follows it once the hooks are done: check that one
            return
        where = f"Resource `{resource_name}`: GET {sanitize_url(response.url)}"
        parsed = _parse_body(response, where)
        if selector is not None:
            values = jsonpath.find_values(selector, parsed)
            if not values:
                keys = sorted(parsed)[:10] if isinstance(parsed, dict) else type(parsed).__name__
                raise ResponseError(
                    f"{where}: the data selector `{data_selector}` is not in the response"
                    f" (top-level keys: {keys}). Set the resource's `data_selector` to where the"
                    " records are.",
                    response,
                )
            records = values[0] if len(values) == 1 else values
        else:
            records = parsed
        if rules.expects_list and not isinstance(records, list):
            raise ResponseError(
                f"{where}: the data selector `{data_selector or '$'}` holds"
                f" {type(records).__name__} {truncate_body(str(records), 60)!r}, not a list of"
                " records.",
                response,
            )
        if rules.required_fields and isinstance(records, list):
            _check_required_fields(records, rules.required_fields, where, response)
        # dlt and the paginators call response.json(); answer from the body parsed here
        vars(response)["json"] = lambda **_: parsed

    return check_body


def _parse_body(response: Response, where: str) -> Any:
    """Parses a JSON body or raises a `ResponseError` that says what came instead."""
    try:
        return json.loadb(response.content)
    except ValueError:
        text = response.text
        if "html" in response.headers.get("Content-Type", "") or text.lstrip()[:1] == "<":
            raise ResponseError(
                f"{where} returned an HTML page with status {response.status_code} instead"
                f" of JSON (a login, maintenance or error page?): {truncate_body(text)!r}",
                response,
            ) from None
        raise ResponseError(
            f"{where} returned a body that is not valid JSON (cut off or malformed,"
            f" {len(response.content)} bytes): {truncate_body(text)!r}",
            response,
            retryable=True,
        ) from None


def _check_required_fields(
    records: list[Any], fields: tuple[str, ...], where: str, response: Response
) -> None:
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise ResponseError(
                f"{where}: record {position} is a {type(record).__name__}, not an object.",
                response,
            )
        for name in fields:
            if record.get(name) is None:
                raise ResponseError(
                    f"{where}: record {position} has no value for `{name}` (the primary key or"
                    " incremental cursor). Nothing of this page was loaded.",
                    response,
                )


def _reason(response: Response) -> str:
    """The response's reason phrase, decoded as `requests` decodes it for its errors."""
    reason: Any = response.reason
    if isinstance(reason, bytes):
        try:
            return reason.decode("utf-8")
        except UnicodeDecodeError:
            return reason.decode("iso-8859-1")
    return str(reason)


def error_hook(resource_name: str, policy: RetryPolicy) -> Callable[..., None]:
    """Builds a response hook that turns error statuses into `HTTPStatusError`.

    The error is also a `requests.HTTPError` carrying the response, so dlt's retry machinery
    still sees the status and retries the ones in `policy`. The message names the resource,
    the status and the redacted URL, and quotes at most a short piece of the body.

    Args:
        resource_name: Resource the endpoint belongs to.
        policy: The endpoint's retry rules, quoted in the message.

    Returns:
        A hook for `response_actions` / `requests` response hooks.
    """

    def raise_for_status(response: Response, *_args: Any, **_kwargs: Any) -> None:
        status = response.status_code
        if response.ok:
            return
        url = sanitize_url(response.url)
        method = response.request.method if response.request is not None else "GET"
        if status in policy.retry_on_status_codes:
            outcome = f"still failing after {policy.max_retries} retries"
        else:
            outcome = "not retried"
        # the status line in requests' own words (`raise_for_status`), as plain dlt raises it
        kind = "Client Error" if status < 500 else "Server Error"  # noqa: PLR2004 - HTTP classes
        message = (
            f"Resource `{resource_name}`: {status} {kind}: {_reason(response)} for url: {url}"
            f" ({method}, {outcome})."
        )
        if hint := _STATUS_HINTS.get(status):
            message += f" {hint}"
        if response.text:
            # an API may echo what it was sent: the secret query values of this request too
            query = parse_qsl(urlsplit(response.url).query)
            REDACTOR.remember(*(value for key, value in query if REDACTOR.is_secret_param(key)))
            body = REDACTOR.redact(truncate_body(response.text))
            message += f" Response starts: {body!r}"
        raise HTTPStatusError(message, status_code=status, url=url, response=response)

    return raise_for_status
