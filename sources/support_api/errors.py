"""Typed errors raised by the support_api source.

Every error names what is wrong (a config key path, a resource, a redacted URL) and never
carries a secret or a whole response body.
"""

from __future__ import annotations

from collections.abc import Iterable

from dlt.common.exceptions import DictValidationException
from requests import HTTPError, Response
from requests.exceptions import InvalidURL, TooManyRedirects

MAX_BODY_IN_ERROR = 200
"""How many characters of a response body an error message may quote."""


def truncate_body(text: str, limit: int = MAX_BODY_IN_ERROR) -> str:
    """Shortens a response body for an error message.

    Args:
        text: The body as text.
        limit: Maximum number of characters kept.

    Returns:
        The text, cut to `limit` characters with a marker saying how much was dropped.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class SupportAPIError(Exception):
    """Base class of every error raised by support_api."""


class ConfigError(SupportAPIError, DictValidationException, ValueError):
    """The configuration is invalid. Raised before any request is made.

    A `DictValidationException` (what plain dlt's `rest_api_source` raises for a config it
    refuses, and what code written for it catches); where dlt would refuse the same value,
    the message quotes dlt's own words too.

    Attributes:
        key_path: Where in the configuration the problem is, e.g.
            `resources[1].endpoint.paginator.cursor_path`.
    """

    def __init__(self, key_path: str, problem: str, accepted: Iterable[str] | None = None) -> None:
        """Builds the message from the key path, the problem and the accepted choices.

        Args:
            key_path: Dotted path of the offending key.
            problem: What is wrong, with secrets already masked.
            accepted: The values or keys that would have been accepted, if a fixed set.
        """
        self.key_path = key_path
        self.problem = problem
        self.accepted = sorted(accepted) if accepted is not None else None
        message = f"Invalid support_api config at `{key_path}`: {problem}"
        if self.accepted is not None:
            message += f" Accepted: {', '.join(self.accepted)}."
        DictValidationException.__init__(self, message, key_path)

    def __str__(self) -> str:
        """The message (not dlt's `Path ...:` form: the key path is in it already)."""
        return self.msg


class AuthenticationError(SupportAPIError):
    """Credentials were refused, by the token endpoint or by the API after a re-authentication."""


class PaginationError(SupportAPIError):
    """The API's pagination cannot be followed (a repeating cursor or next link, a lying total)."""


class ResponseError(SupportAPIError, HTTPError):
    """A response that cannot be used: not JSON, an HTML page, a missing data selector.

    Attributes:
        retryable: True for bodies that look cut off in transit (malformed or truncated
            JSON): those are retried like a 5xx. An HTML page or a missing selector is not.
    """

    def __init__(self, message: str, response: Response, *, retryable: bool = False) -> None:
        """Keeps the response for retry decisions.

        Args:
            message: The full message, already redacted and truncated.
            response: The response.
            retryable: Whether sending the request again may help.
        """
        super().__init__(message, response=response)
        self.retryable = retryable


class HTTPStatusError(SupportAPIError, HTTPError):
    """The API answered with an error status that is not retried (or retries ran out).

    It is also a `requests.HTTPError` carrying the response, so dlt's retry machinery reads
    the status (and `Retry-After`) from it.

    Attributes:
        status_code: The HTTP status of the last response.
        url: The request URL with secrets redacted.
    """

    def __init__(self, message: str, status_code: int, url: str, response: Response) -> None:
        """Keeps the status and the redacted URL next to the message.

        Args:
            message: The full message, already redacted.
            status_code: HTTP status of the last response.
            url: Redacted request URL.
            response: The response, for retry decisions.
        """
        super().__init__(message, response=response)
        self.status_code = status_code
        self.url = url


class UntrustedHostError(SupportAPIError, InvalidURL):
    """A request would have carried the source's credentials to a host they do not belong to.

    Raised before anything is sent: for a next link, a child URL or a redirect to another
    origin than `base_url`'s and the `allowed_hosts`, or to plain http beyond loopback. It is
    a `requests.exceptions.InvalidURL`, which no retry policy retries.

    Attributes:
        host: The refused `host` or `host:port`.
    """

    def __init__(self, message: str, host: str) -> None:
        """Keeps the refused host next to the message.

        Args:
            message: The full message, naming the resource and how to allow the host.
            host: The refused host.
        """
        super().__init__(message)
        self.host = host


class RedirectLoopError(SupportAPIError, TooManyRedirects):
    """The API kept redirecting (a loop, or more hops than requests follows)."""
