"""The token endpoint's HTTP: one token request with retries, and what each answer means.

The auth classes (`auth.py`) decide when a token is needed and what to do with it; this module
makes the request through requests-oauthlib and turns its outcome into a token or a typed
error:

- 429, 5xx and connection errors are retried by the same loop and backoff as data requests
  (`http_policy.retrying` with a `RetryPolicy`: exponential waits honouring `Retry-After`);
- any other 4xx fails at once with the grant's own `AuthenticationError`, saying what to
  change (`invalid_grant`, `invalid_client`...);
- a 2xx that is not a token, an insecure token URL, or an unreadable `expires_in` are typed
  errors too.

Every token in an answer is handed to the redactor before requests-oauthlib logs the body,
and no error carries an exception whose message shows a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from dlt.sources.helpers.rest_client.redaction import sanitize_url
from oauthlib.oauth2 import InsecureTransportError, OAuth2Error
from requests import Response
from requests import exceptions as requests_errors
from tenacity import RetryCallState

from .errors import AuthenticationError, truncate_body
from .http_policy import CONNECTION_ERRORS, RetryPolicy, retrying
from .redaction import REDACTOR, chain_safely

logger = logging.getLogger(__name__)


class TokenEndpointUnavailable(requests_errors.HTTPError):
    """A 429 or 5xx from the token endpoint: retried. Carries the response for `Retry-After`."""


def parse_token_body(response: Response) -> Mapping[str, Any]:
    """Reads a token endpoint's JSON (or legacy form-encoded) body; empty when unreadable.

    Args:
        response: The token endpoint's answer.

    Returns:
        The body's items.
    """
    try:
        body = response.json()
    except ValueError:
        return dict(parse_qsl(response.text))
    return body if isinstance(body, Mapping) else {}


@dataclass
class TokenEndpoint:
    """One OAuth2 token endpoint, as a grant talks to it.

    Attributes:
        url: The token URL.
        grant_type: The grant, as named in messages.
        policy: How token requests are retried (`max_retries`, `backoff_factor`,
            `max_retry_delay`).
        clock: Seconds; read just before each attempt (when the token was issued).
        refusal: Builds the grant's error for a 4xx other than 429.
        settings_key: Where the credentials are configured, quoted in messages.
    """

    url: str
    grant_type: str
    policy: RetryPolicy
    clock: Callable[[], float]
    refusal: Callable[[Response], AuthenticationError]
    settings_key: str

    def inspect(self, response: Response, *_args: Any, **_kwargs: Any) -> Response:
        """Token session response hook: learn new secrets, then classify the status.

        Args:
            response: Any answer of the token endpoint.

        Returns:
            The response, when it is a success.

        Raises:
            TokenEndpointUnavailable: On 429 or 5xx (retried).
            AuthenticationError: On any other 4xx (not retried).
        """
        body = parse_token_body(response)
        REDACTOR.remember(
            *(body.get(key) for key in ("access_token", "refresh_token", "id_token")),
        )
        status = response.status_code
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            response.close()
            raise TokenEndpointUnavailable(
                f"The token endpoint {sanitize_url(response.url)} answered HTTP {status}.",
                response=response,
            )
        if status >= HTTPStatus.BAD_REQUEST:
            response.close()
            raise self.refusal(response)
        return response

    def request(self, call: Callable[[], Mapping[str, Any]]) -> tuple[Mapping[str, Any], float]:
        """Makes the grant's token request, retrying what retrying may cure.

        Args:
            call: One token request of the grant (through a session whose hook is `inspect`).

        Returns:
            The token endpoint's answer and the clock reading taken before the attempt that
            got it.

        Raises:
            AuthenticationError: When the endpoint refuses, keeps failing, cannot be reached
                or answers with something that is not a token.
        """
        url = sanitize_url(self.url)
        attempts = self.policy.max_retries + 1
        failure: AuthenticationError | None = None
        try:
            for attempt in retrying(
                self.policy, (TokenEndpointUnavailable, *CONNECTION_ERRORS), self._log_retry
            ):
                with attempt:
                    issued_at = self.clock()
                    outcome = self._outcome(call)
        except TokenEndpointUnavailable as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            failure = AuthenticationError(
                f"The token endpoint {url} answered HTTP {status} to {attempts} attempts in a"
                f" row ({self.grant_type} grant). It is probably down: the next run will try"
                " again."
            )
            chain_safely(failure, exc)
        except CONNECTION_ERRORS as exc:
            failure = AuthenticationError(
                f"Could not reach the token endpoint {url} in {attempts} attempts"
                f" ({type(exc).__name__}). Check the network and `{self.settings_key}.token_url`."
            )
            chain_safely(failure, exc)
        if failure is not None:
            raise failure
        if isinstance(outcome, AuthenticationError):
            raise outcome
        return outcome, issued_at

    def _outcome(
        self, call: Callable[[], Mapping[str, Any]]
    ) -> Mapping[str, Any] | AuthenticationError:
        """Runs `call`; returns oauthlib's refusals as typed errors, to raise.

        The errors are returned rather than raised so the caller raises them outside this
        `except` block, without oauthlib's exception (which may quote the body) as context.
        """
        url = sanitize_url(self.url)
        try:
            return call()
        except requests_errors.RequestException:
            raise  # retried or reported by the caller
        except InsecureTransportError:
            return AuthenticationError(
                f"`token_url` {url} is not https and OAUTHLIB_INSECURE_TRANSPORT is not set."
            )
        except OAuth2Error as exc:  # a 2xx answer that is not a token
            description = REDACTOR.redact(truncate_body(str(exc.description or "")))
            return AuthenticationError(
                f"The token endpoint {url} answered the {self.grant_type} request with"
                f" something that is not a token ({exc.error}: {description})."
            )
        except Warning as scope_change:  # oauthlib raises a Warning when the scope differs
            granted = getattr(scope_change, "token", None)
            if not isinstance(granted, Mapping):
                raise
            logger.warning(
                "The token endpoint granted scope %r instead of the requested %r.",
                getattr(scope_change, "new_scope", None),
                getattr(scope_change, "old_scope", None),
            )
            return granted
        except ValueError as exc:  # oauthlib: "expires_in must be an int"
            return AuthenticationError(
                f"The token endpoint {url} answered with an unreadable token"
                f" ({REDACTOR.redact(str(exc))})."
            )

    def _log_retry(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, requests_errors.HTTPError) and exc.response is not None:
            reason = f"HTTP {exc.response.status_code}"
        else:
            reason = type(exc).__name__
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "Token request to %s failed (%s); retry %d of %d in %.1f s.",
            sanitize_url(self.url),
            reason,
            retry_state.attempt_number,
            self.policy.max_retries,
            wait,
        )
