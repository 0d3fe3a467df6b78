"""The one place that masks secrets: in texts, URLs, log records and exceptions.

Every secret the source handles (API keys, bearer and access tokens, refresh tokens, client
secrets, basic-auth passwords) is remembered by value in one process-wide `REDACTOR` as soon as
the source or an auth object learns it. Anything leaving the package in clear text goes
through it: error messages, the log records of the libraries that print request lines or token
bodies (`urllib3`, `dlt`, `requests_oauthlib`, `oauthlib`), and the exceptions of a failed
request (`scrub_exception`), whose chain, request and response are cleaned before dlt wraps
them into its own errors and writes them to the pipeline's trace.

Beyond known values it masks what is shaped like a secret: query parameters with a sensitive
name (dlt's `SENSITIVE_PARAMS` plus the configured API key parameter), `access_token=...`-like
items of JSON or form bodies, and the credentials of `Bearer`/`Basic` authorization values.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any, Final, cast
from urllib.parse import quote, quote_plus

from dlt.sources.helpers.rest_client.redaction import SENSITIVE_PARAMS
from requests import PreparedRequest, RequestException, Response

MASK: Final = "***"
"""What a secret is replaced with."""

MIN_REDACTED_LENGTH: Final = 4
"""Shorter values are not redacted by value: masking them would garble every log line."""

_KEYED_SECRET: Final = re.compile(
    r"""(?i)(["']?(?:access_token|refresh_token|id_token|client_secret)["']?\s*[:=]\s*["']?)"""
    r"""[^"'&\s,;}\]]+"""
)
"""A token or secret written as a JSON/dict item, a form field or a query parameter."""

_AUTH_SCHEME_VALUE: Final = re.compile(r"(?i)\b((?:bearer|basic)\s+)[a-z0-9\-._~+/]{8,}=*")
"""The credentials of an `Authorization: Bearer ...` or `Basic ...` header."""

_SENSITIVE_HEADER: Final = re.compile(
    r"(?i)authorization|api[-_]?key|token|secret|password|cookie|session|signature"
)
"""Header names that carry credentials (`Authorization`, `X-API-Key`, `Cookie`...)."""

_LOGGED_BY: Final = (
    "urllib3.connectionpool",  # request lines at DEBUG, query string included
    "dlt",  # request URLs in rest_client's debug and retry messages
    "requests_oauthlib",  # token bodies at DEBUG
    "oauthlib",
)


class Redactor(logging.Filter):
    """Masks known secret values and anything shaped like a secret in texts and log records.

    One instance serves the whole process (`REDACTOR`): the loggers it filters are shared by
    every source and auth object, so each adds its secrets to the same set.
    """

    def __init__(self) -> None:
        """Starts with no known secrets and dlt's sensitive query parameter names."""
        super().__init__()
        self._values: tuple[str, ...] = ()
        self._params: frozenset[str] = frozenset(name.lower() for name in SENSITIVE_PARAMS)
        self._param_pattern = _param_pattern(self._params)
        self._guard = threading.Lock()

    def remember(self, *values: str | None) -> None:
        """Adds secret values (and their URL/JSON-escaped forms) to the redacted set.

        Args:
            values: Secrets; None and very short values are skipped.
        """
        variants: set[str] = set()
        for value in values:
            if value and len(value) >= MIN_REDACTED_LENGTH:
                variants.update(
                    (value, quote_plus(value), quote(value, safe=""), json.dumps(value)[1:-1])
                )
        if not variants:
            return
        with self._guard:
            merged = variants.union(self._values)
            # longest first, so a secret containing another one is masked whole
            self._values = tuple(sorted(merged, key=len, reverse=True))

    def remember_params(self, names: Iterable[str | None]) -> None:
        """Adds query parameter names whose values are masked wherever a URL is written.

        Args:
            names: Parameter names, e.g. the name of an API key sent in the query.
        """
        new = {name.lower() for name in names if name} - self._params
        if new:
            with self._guard:
                self._params = self._params | new
                self._param_pattern = _param_pattern(self._params)

    def is_secret_param(self, name: str) -> bool:
        """Whether a query parameter of this name has its value masked.

        Args:
            name: The parameter name.

        Returns:
            True for dlt's sensitive names and the ones added with `remember_params`.
        """
        return name.lower() in self._params

    def redact(self, text: str) -> str:
        """Returns `text` with every known secret and every secret-shaped value masked.

        Args:
            text: Any text: a log message, an error message, a URL, a server's answer.

        Returns:
            The masked text.
        """
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        text = self._param_pattern.sub(rf"\g<1>{MASK}", text)
        text = _KEYED_SECRET.sub(rf"\g<1>{MASK}", text)
        return _AUTH_SCHEME_VALUE.sub(rf"\g<1>{MASK}", text)

    def is_clean(self, text: str) -> bool:
        """Whether `text` shows nothing `redact` would mask.

        Args:
            text: Any text.

        Returns:
            True when redacting would not change it.
        """
        return self.redact(text) == text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites the record's message (and traceback text) with secrets masked.

        Args:
            record: The record being logged.

        Returns:
            Always True: records are redacted, never dropped.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: redact its raw template
            message = str(record.msg)
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and record.exc_text is None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def _param_pattern(names: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"([?&;](?:{alternatives})=)[^&\s\"'#)]*", re.IGNORECASE)


REDACTOR: Final = Redactor()
"""The process-wide redactor."""


def mask(value: Any) -> str:
    """Masks a secret of a config for a message: the first and last character of long values.

    Args:
        value: The secret.

    Returns:
        A masked representation.
    """
    text = str(value)
    return "*****" if len(text) < 8 else f"{text[0]}*****{text[-1]}"  # noqa: PLR2004 - short secrets are fully masked


def install_log_redaction() -> None:
    """Attaches `REDACTOR` to the loggers that print request lines or token bodies. Idempotent.

    A logger's filters only see records created on that very logger, so the filter goes on
    each of them and on every child logger that exists by now. Called whenever resources or
    an auth object are set up, so child loggers created later are covered too.
    """
    roots = {name.split(".", 1)[0] for name in _LOGGED_BY}
    names = set(_LOGGED_BY)
    for name, existing in list(logging.root.manager.loggerDict.items()):
        if (
            isinstance(existing, logging.Logger)
            and name.split(".", 1)[0] in roots
            and name.split(".", 1)[0] != "dlt"  # dlt's own children log no request lines
        ):
            names.add(name)
    for name in names:
        named_logger = logging.getLogger(name)
        if REDACTOR not in named_logger.filters:
            named_logger.addFilter(REDACTOR)


def remember_auth(auth: Any) -> None:
    """Remembers the secrets of one of dlt's auth objects (API key, bearer, basic).

    The package's OAuth2 classes remember their own secrets as they learn them.

    Args:
        auth: An auth object, or None.
    """
    if auth is None:
        return
    for field in ("api_key", "token", "password"):
        value = getattr(auth, field, None)
        if isinstance(value, str):
            REDACTOR.remember(value)
    username, password = getattr(auth, "username", None), getattr(auth, "password", None)
    if isinstance(username, str) and isinstance(password, str):
        REDACTOR.remember(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))
    if getattr(auth, "location", None) == "query":
        REDACTOR.remember_params([getattr(auth, "name", None)])


def is_sensitive_header(name: str) -> bool:
    """Whether a request header of this name carries credentials.

    Args:
        name: The header name.

    Returns:
        True for `Authorization`, API key, token, secret, cookie and session headers.
    """
    return _SENSITIVE_HEADER.search(name) is not None


def safe_cause(exc: BaseException) -> BaseException | None:
    """Returns `exc` to chain as a cause, or None when its message would reveal a secret.

    Args:
        exc: The exception that led to another one.

    Returns:
        `exc`, or None.
    """
    return exc if REDACTOR.is_clean(str(exc)) else None


def chain_safely(error: BaseException, cause: BaseException) -> BaseException:
    """Chains `cause` to `error` only when the cause's message shows no secret.

    Raise the result *outside* the `except` block that caught `cause`: dlt's trace follows
    `__context__` when there is no `__cause__`, and `raise ... from None` leaves the context set.

    Args:
        error: The error to raise.
        cause: The exception that led to it.

    Returns:
        `error`, with `__cause__` set to `cause` or to None.
    """
    error.__cause__ = safe_cause(cause)
    error.__suppress_context__ = True
    return error


def scrub_request(request: PreparedRequest) -> PreparedRequest:
    """A copy of a request that carries no credentials, to keep on an exception or response.

    Args:
        request: The request as it was sent.

    Returns:
        The copy: URL redacted, credential headers masked, a body with secrets redacted.
    """
    clean = copy.copy(request)
    clean.url = REDACTOR.redact(request.url or "")
    clean.headers = request.headers.copy()
    for name, value in list(clean.headers.items()):
        if is_sensitive_header(name):
            clean.headers[name] = MASK
        elif isinstance(value, str):
            clean.headers[name] = REDACTOR.redact(value)
    body = request.body
    if isinstance(body, bytes):
        text = body.decode("utf-8", "replace")
        clean.body = body if REDACTOR.is_clean(text) else REDACTOR.redact(text).encode()
    elif isinstance(body, str):
        clean.body = REDACTOR.redact(body)
    clean.hooks = {"response": []}
    return clean


def scrub_response(response: Response) -> None:
    """Removes the credentials a response holds through its request, URL and redirects.

    Args:
        response: The response, changed in place.
    """
    for hop in [*response.history, response]:
        if hop.request is not None:
            hop.request = scrub_request(hop.request)
        hop.url = REDACTOR.redact(hop.url or "")


def detached_copy(exc: RequestException) -> RequestException:
    """A request error of the same kind, its message redacted, with no request and no chain.

    urllib3's errors repeat the URL (query secrets included) in their message, their `url`
    attribute and their cause, and the error's `request` holds the credential headers: the copy
    keeps only the redacted message, and the kind, which retry policies decide on.

    Args:
        exc: The error raised while sending.

    Returns:
        The copy, or `exc` scrubbed in place when its class cannot be built from a message.
    """
    message = REDACTOR.redact(str(exc))
    try:
        return type(exc)(message)
    except TypeError:  # an error class with a constructor of its own
        scrubbed = scrub_exception(exc)
        return cast("RequestException", scrubbed)


def scrub_exception(exc: BaseException) -> BaseException:
    """Cleans an exception and its whole chain of every secret, in place.

    Messages (`args`), the request and response an exception of `requests` carries, and the
    URL of urllib3's errors are redacted; causes and contexts are cleaned the same way. What
    is left can be printed, logged, pickled into dlt's trace or stored by an orchestrator.

    Args:
        exc: The exception.

    Returns:
        The same exception.
    """
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _scrub_one(current)
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return exc


def _scrub_one(exc: BaseException) -> None:
    if not all(REDACTOR.is_clean(str(arg)) for arg in exc.args):
        exc.args = tuple(REDACTOR.redact(str(arg)) for arg in exc.args)
    request = getattr(exc, "request", None)
    if isinstance(request, PreparedRequest):
        exc.request = scrub_request(request)  # type: ignore[attr-defined]
    response = getattr(exc, "response", None)
    if isinstance(response, Response):
        scrub_response(response)
    url = getattr(exc, "url", None)  # urllib3's MaxRetryError, pickled with it
    if isinstance(url, str):
        exc.url = REDACTOR.redact(url)  # type: ignore[attr-defined]
    reason = getattr(exc, "reason", None)  # urllib3 keeps the cause here too
    if isinstance(reason, BaseException) and reason is not exc:
        _scrub_one(reason)
