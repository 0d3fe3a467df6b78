"""How support_api talks HTTP: retries, backoff, `Retry-After`, timeouts and error messages.

Retries are dlt's (`dlt.sources.helpers.requests.Client`, built on tenacity): this module only
turns an endpoint's `error_handler` into such a client and adds an error hook that names the
resource and the redacted URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client.redaction import sanitize_url
from requests import Response, Session

from .errors import ConfigError, HTTPStatusError, truncate_body
from .settings import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_STATUS_CODES,
)

ERROR_HANDLER_KEYS = frozenset(
    {"retry_on_status_codes", "max_retries", "backoff_factor", "max_retry_delay", "timeout"}
)
"""Keys accepted in an endpoint's `error_handler` block."""

_HTTP_STATUSES = range(100, 600)
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


@dataclass
class SessionPool:
    """One retrying `requests` session per distinct policy, shared by the resources using it.

    Connections are pooled per policy (keep-alive across pages and resources).
    """

    max_connections: int = 20
    _clients: dict[RetryPolicy, Client] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def session_for(self, policy: RetryPolicy) -> Session:
        """Returns a session that retries per `policy`, one real session per thread.

        Args:
            policy: The retry rules.

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
                )
                self._clients[policy] = client
        return cast("Session", _PerThreadSession(client))


class _PerThreadSession:
    """Forwards to the calling thread's session of a dlt `Client`."""

    raise_for_status = False

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client.session, name)


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
        message = (
            f"Resource `{resource_name}`: {method} {url} returned {status} {response.reason}"
            f" ({outcome})."
        )
        if hint := _STATUS_HINTS.get(status):
            message += f" {hint}"
        if response.text:
            message += f" Response starts: {truncate_body(response.text)!r}"
        raise HTTPStatusError(message, status_code=status, url=url, response=response)

    return raise_for_status
