"""OAuth2 access tokens for support_api: the refresh-token and client-credentials grants.

Both grants share one token lifecycle (`OAuth2TokenAuthBase`):

- The access token is fetched lazily, on the first request, and refreshed before it expires:
  `refresh_leeway_seconds` early, but never more than half of the token's lifetime early, so a
  30-second token is still used for 15 seconds.
- Parallel resources share one auth object. When many threads find the token expired, one of
  them asks the token endpoint and the others wait for its answer (a lock with a second expiry
  check inside it).
- A 401 from the API makes the request re-authenticate once: the token is refreshed (unless
  another thread already did), the request is sent again and, when the API still answers 401,
  an `AuthenticationError` names the redacted URL. There is no loop.
- 429, 5xx and connection errors from the token endpoint are retried with exponential backoff
  (2, 4, 8 seconds for a factor of 2), honouring `Retry-After` up to `max_retry_delay`. Any
  other 4xx (`invalid_grant`, `invalid_client`, ...) fails at once with an `AuthenticationError`
  saying what to do.

This module holds the auth classes: settings, the token cache and its lock, the 401 re-send and
the grants' advice. Its helpers each have one role: `token_client.py` makes the token request
(with the data requests' retry loop, `http_policy.retrying`), `token_store.py` keeps rotated
refresh tokens, and `redaction.py` masks every secret.

The refresh-token grant (`OAuth2RefreshTokenAuth`) also handles rotation: many providers issue
single-use refresh tokens, so every refresh returns a new refresh token and revokes the old
one. The new token is written to a `TokenStore` *before* the new access token is used, and the
stored token is preferred over the configured one on the next run. The default store is a JSON
file outside the project (see `default_token_store_path`), written atomically with mode 0600.
It remembers a fingerprint of the configured refresh token it descends from: when you put a
different (re-issued) refresh token into the configuration, the configured token wins and the
store is overwritten after its first successful refresh. Runs in other processes may share the
store (parallel backfill windows, overlapping schedules): every refresh holds the store's lock
across processes (`LockableTokenStore.exclusive`), reads it again and exchanges the newest
token, so no run sends a refresh token another run has already used.

Secrets never leave this module in clear: `repr()`/`str()` of the auth objects mask them, error
messages quote only redacted server text, and every client secret, refresh token and access
token this module sees is handed to the package's one redactor (`redaction.REDACTOR`), whose
log filter on the `requests_oauthlib` and `oauthlib` loggers (which log token bodies at DEBUG)
masks them, plus anything that looks like one. Nothing is written to dlt state.

Token URLs must use https. Plain http is refused for every host except loopback addresses
(127.0.0.0/8, ::1, localhost), and for those only when `OAUTHLIB_INSECURE_TRANSPORT` is set in
the environment (oauthlib's own switch, meant for local test servers). This module never sets
that variable itself.
"""

import base64
import contextlib
import copy
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any, ClassVar, Literal, Optional, Self
from urllib.parse import quote_plus, urlsplit

import dlt
from dlt.common.configuration.const import TYPE_EXAMPLES
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.configuration.specs.base_configuration import (
    NotResolved,
    configspec,
    is_hint_not_resolvable,
    is_secret_hint,
)
from dlt.common.typing import TSecretStrValue
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.helpers.rest_client.redaction import sanitize_url
from dlt.version import __version__ as dlt_version
from oauthlib.oauth2 import (
    BackendApplicationClient,
    WebApplicationClient,
)
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from .errors import AuthenticationError, ConfigError, truncate_body
from .http_policy import RetryPolicy
from .origins import is_loopback_host
from .redaction import MASK, REDACTOR, chain_safely, install_log_redaction
from .token_client import TokenEndpoint, parse_token_body
from .token_store import (
    FileTokenStore,
    LockableTokenStore,
    TokenStore,
    default_token_store_path,
    describe_store,
    refresh_token_fingerprint,
)

if sys.platform != "win32":
    pass

__all__ = [
    "CREDENTIALS_SECTION",
    "FileTokenStore",
    "LockableTokenStore",
    "OAuth2ClientCredentialsAuth",
    "OAuth2RefreshTokenAuth",
    "OAuth2TokenAuthBase",
    "TokenStore",
    "default_token_store_path",
    "refresh_token_fingerprint",
]

logger = logging.getLogger(__name__)

CREDENTIALS_SECTION = "sources.support_api.credentials"
"""Where the source reads these credentials from; quoted in error messages."""

_ENV_PREFIX = "SOURCES__SUPPORT_API__CREDENTIALS__"
_FINGERPRINT_LENGTH = 16
_REAUTH_MARK = "_support_api_reauthenticated"
"""Attribute set on a request re-sent after a 401, so it is never re-authenticated twice."""
# --- the token lifecycle ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class _IssuedToken:
    """An access token and the clock readings that decide when it is refreshed."""

    access_token: str
    expires_at: float
    refresh_at: float

    def __repr__(self) -> str:
        """Masks the token."""
        return f"_IssuedToken(access_token='***', expires_at={self.expires_at!r})"


def _bearer_token_of(request: PreparedRequest) -> str | None:
    header = request.headers.get("Authorization")
    prefix = "bearer "
    if isinstance(header, str) and header[: len(prefix)].lower() == prefix:
        return header[len(prefix) :]
    return None


@configspec
class OAuth2TokenAuthBase(AuthConfigBase):
    """The token lifecycle shared by the OAuth2 grants: lazy fetch, early refresh, 401 re-auth.

    Subclasses implement the grant: `build_oauth_client` and `request_token`, and optionally
    `persist_token` (rotation) and `token_error_guidance`. The lifecycle steps
    (`is_token_expired`, `obtain_token`, `install_token`, `token_lifetime`, `effective_leeway`,
    `build_token_session`, `token_error`) are small methods that can be overridden one by one.

    Attributes:
        token_url: The token endpoint. Must be https (see the module docs for loopback http).
        client_id: OAuth2 client id.
        client_secret: OAuth2 client secret.
        scope: Space-separated scopes to ask for; None asks for the client's default.
        client_auth: How the client authenticates at the token endpoint: `body` puts
            client_id/client_secret in the form body, `basic` sends them as HTTP Basic auth
            (each form-urlencoded first, as RFC 6749 section 2.3.1 requires).
        refresh_leeway_seconds: Refresh this many seconds before the access token expires,
            but never more than half of the token's lifetime early.
        default_token_expiration: Lifetime in seconds assumed when the token endpoint sends
            no `expires_in`.
        token_request_max_retries: Retries of a token request after 429, 5xx or a connection
            error (3 means up to 4 requests).
        token_request_backoff_factor: Waits between retries are `factor * 2 ** (retry - 1)`
            seconds: 2, 4, 8 for a factor of 2.
        token_request_timeout: Connect and read timeout of a token request, in seconds.
        max_retry_delay: Cap in seconds on one wait, `Retry-After` included.
        clock: Returns the current time in seconds; judges every expiry. Not configurable from
            files; tests pass a fake clock.
        lock: Serializes token requests; created when not given.
        token_transport: A `requests` transport adapter mounted on the token session
            (custom TLS or proxies, or a fake endpoint in tests). The default is requests'
            `HTTPAdapter`.
    """

    token_url: str = dlt.config.value
    client_id: TSecretStrValue = dlt.secrets.value
    client_secret: TSecretStrValue = dlt.secrets.value
    scope: str | None = None
    client_auth: Literal["body", "basic"] = "body"
    refresh_leeway_seconds: float = 60
    default_token_expiration: float = 3600
    token_request_max_retries: int = 3
    token_request_backoff_factor: float = 2
    token_request_timeout: float = 30
    max_retry_delay: float = 60
    clock: Annotated[Callable[[], float], NotResolved()] = time.time
    # threading.Lock is a function on Python < 3.13, so `threading.Lock | None` fails at runtime
    lock: Annotated[Optional[threading.Lock], NotResolved()] = None  # noqa: UP045
    token_transport: Annotated[BaseAdapter | None, NotResolved()] = None

    grant_type: ClassVar[str] = "token"
    _PLACEHOLDER_CHECKED: ClassVar[tuple[str, ...]] = (
        "token_url",
        "client_id",
        "client_secret",
        "refresh_token",
    )
    """The OAuth2 grant, as named in messages."""
    _SHARED_ON_COPY: ClassVar[frozenset[str]] = frozenset({"clock", "token_transport"})

    def __post_init__(self) -> None:
        """Creates the runtime state; nothing is requested until the first use."""
        if self.lock is None:
            self.lock = threading.Lock()
        self._guard: threading.Lock = self.lock
        self._token: _IssuedToken | None = None
        self._token_session: Any = None
        self._endpoint: TokenEndpoint | None = None
        self._started = threading.Event()

    # -- requests / dlt entry points -------------------------------------------------------------

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        """Adds the bearer token and the 401 re-authentication hook to a request.

        Args:
            request: The request being prepared by dlt's RESTClient (or any requests session).

        Returns:
            The same request.
        """
        request.headers["Authorization"] = f"Bearer {self.current_access_token()}"
        response_hooks: list[Callable[..., Any]] = request.hooks["response"]
        if self._handle_401 not in response_hooks:  # once, even if the auth runs twice
            response_hooks.append(self._handle_401)
        return request

    def current_access_token(self) -> str:
        """Returns a usable access token, fetching or refreshing it first when needed.

        Thread safe: when several threads find the token expired, one token request is made.

        Returns:
            The access token.
        """
        self._ensure_started()
        token = self._token
        if token is None or self._is_stale(token):
            with self._guard:
                if self.is_token_expired():
                    self.obtain_token()
                token = self._require_token()
        return token.access_token

    def is_token_expired(self) -> bool:
        """Tells whether there is no access token or it is due for its early refresh.

        Returns:
            True when a new token must be obtained before the next request.
        """
        token = self._token
        return token is None or self._is_stale(token)

    def _is_stale(self, token: _IssuedToken) -> bool:
        return self.clock() >= token.refresh_at

    def _require_token(self) -> _IssuedToken:
        token = self._token
        if token is None:
            raise AuthenticationError(
                f"No access token was obtained from {sanitize_url(self.token_url)}."
            )
        return token

    # -- lifecycle steps -------------------------------------------------------------------------

    def obtain_token(self) -> None:
        """Requests a token (with retries), persists what must survive, then installs it.

        Called with `lock` held by the lifecycle; call `current_access_token` instead of this.

        Raises:
            AuthenticationError: When the token endpoint refuses, keeps failing, or answers
                with something that is not a token.
        """
        session = self._get_token_session()
        install_log_redaction()
        token, issued_at = self._token_endpoint().request(lambda: self.request_token(session))
        self.persist_token(token)
        self.install_token(token, issued_at)

    def persist_token(self, token: Mapping[str, Any]) -> None:
        """Saves what must outlive this run, before the new access token is used.

        The base class keeps nothing; the refresh-token grant saves a rotated refresh token.

        Args:
            token: The token endpoint's answer.
        """

    def install_token(self, token: Mapping[str, Any], issued_at: float) -> None:
        """Makes `token` the current access token and schedules its early refresh.

        Args:
            token: The token endpoint's answer.
            issued_at: Clock reading taken just before the token was requested.

        Raises:
            AuthenticationError: When the answer holds no access token.
        """
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise AuthenticationError(
                f"The token endpoint {sanitize_url(self.token_url)} answered without an"
                " access_token."
            )
        REDACTOR.remember(access_token)
        lifetime = self.token_lifetime(token)
        expires_at = issued_at + lifetime
        self._token = _IssuedToken(
            access_token=access_token,
            expires_at=expires_at,
            refresh_at=expires_at - self.effective_leeway(lifetime),
        )
        logger.info(
            "Obtained an OAuth2 access token (%s grant) from %s, valid for %.0f s.",
            self.grant_type,
            sanitize_url(self.token_url),
            lifetime,
        )

    def token_lifetime(self, token: Mapping[str, Any]) -> float:
        """Returns the token's lifetime in seconds: `expires_in`, or the configured default.

        Args:
            token: The token endpoint's answer.

        Returns:
            Seconds the access token is valid for.
        """
        expires_in = token.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            return float(expires_in)
        return float(self.default_token_expiration)

    def effective_leeway(self, lifetime: float) -> float:
        """Returns how early to refresh: the leeway, capped at half of the token's lifetime.

        Args:
            lifetime: The token's lifetime in seconds.

        Returns:
            Seconds before expiry at which the token counts as expired.
        """
        return max(0.0, min(float(self.refresh_leeway_seconds), lifetime / 2))

    def build_oauth_client(self) -> Any:
        """Returns the oauthlib client of the grant.

        Returns:
            An `oauthlib.oauth2.Client`.
        """
        raise NotImplementedError

    def request_token(self, session: OAuth2Session) -> Mapping[str, Any]:
        """Makes one token request of the grant through requests-oauthlib.

        Args:
            session: The token session (`build_token_session`).

        Returns:
            The token endpoint's parsed answer.
        """
        raise NotImplementedError

    def build_token_session(self) -> OAuth2Session:
        """Builds the session used for token requests only (never for API requests).

        Its response hook registers new tokens with the log redaction before requests-oauthlib
        logs the body, and classifies error statuses before oauthlib parses them.

        Returns:
            The requests-oauthlib session.
        """
        scope = self._scopes()
        session = OAuth2Session(client=self.build_oauth_client(), scope=scope)
        session.headers["User-Agent"] = f"dlt/{dlt_version} support_api"
        session.headers["Accept"] = "application/json"
        session.hooks["response"].append(self._token_endpoint().inspect)
        if self.token_transport is not None:
            session.mount("https://", self.token_transport)
            session.mount("http://", self.token_transport)
        return session

    def token_error(self, response: Response) -> AuthenticationError:
        """Builds the error for a 4xx (other than 429) from the token endpoint.

        Args:
            response: The refusal.

        Returns:
            The error to raise, saying what to do.
        """
        body = parse_token_body(response)
        code = body.get("error") if isinstance(body.get("error"), str) else None
        description = body.get("error_description")
        detail = f"HTTP {response.status_code}"
        if code:
            detail += f" {code}"
            if isinstance(description, str) and description:
                detail += f": {REDACTOR.redact(truncate_body(description))}"
        elif response.text:
            detail += f": {REDACTOR.redact(truncate_body(response.text))}"
        return AuthenticationError(
            f"The token endpoint {sanitize_url(response.url or self.token_url)} refused the"
            f" {self.grant_type} request ({detail}). {self.token_error_guidance(code)}"
            " Not retried: only a configuration change fixes this."
        )

    def token_error_guidance(self, error_code: str | None) -> str:
        """Tells the user what to change after the token endpoint refused a request.

        Args:
            error_code: The OAuth2 `error` of the answer, if any.

        Returns:
            One or two sentences of advice.
        """
        if error_code == "invalid_scope":
            return f"Check `{CREDENTIALS_SECTION}.scope` (now {self.scope!r})."
        if error_code == "unauthorized_client":
            return (
                f"This client may not use the {self.grant_type} grant: check the app's"
                " settings at the provider."
            )
        return (
            f"Check `client_id` and `client_secret` in `{CREDENTIALS_SECTION}`, and whether"
            " the provider wants them in the form body or as HTTP Basic auth (`client_auth`,"
            f" now {self.client_auth!r})."
        )

    def on_resolved(self) -> None:
        """Treats `dlt init`'s placeholders as missing values.

        `dlt init` writes `"<configure me>"` for every field of the first credential kind. Read
        as values, they would make this kind win over the kind the user actually configured
        (an API key in env vars, say) and fail at the first token request. Reporting them as
        missing lets dlt try the next credential kind, or name the keys still to configure.

        Raises:
            ConfigFieldMissingException: When a required field holds a placeholder.
        """
        placeholders = set(TYPE_EXAMPLES.values())
        unset = [
            name
            for name in self._PLACEHOLDER_CHECKED
            if isinstance(getattr(self, name, None), str) and getattr(self, name) in placeholders
        ]
        if unset:
            raise ConfigFieldMissingException(self, {name: [] for name in unset})

    def validate_settings(self) -> None:
        """Checks the settings before the first token request.

        Raises:
            ConfigError: On a missing or out-of-range setting.
            AuthenticationError: When `token_url` is not https (see the module docs).
        """
        for name in ("token_url", "client_id", "client_secret"):
            if not getattr(self, name):
                raise ConfigError(
                    f"{CREDENTIALS_SECTION}.{name}",
                    f"required but not set (env var {_ENV_PREFIX}{name.upper()}).",
                )
        if self.client_auth not in ("body", "basic"):
            raise ConfigError(
                f"{CREDENTIALS_SECTION}.client_auth",
                f"got {self.client_auth!r}.",
                accepted=("body", "basic"),
            )
        if (
            not isinstance(self.token_request_max_retries, int)
            or self.token_request_max_retries < 0
        ):
            raise ConfigError(
                f"{CREDENTIALS_SECTION}.token_request_max_retries",
                f"expected an integer >= 0, got {self.token_request_max_retries!r}.",
            )
        for name in (
            "refresh_leeway_seconds",
            "default_token_expiration",
            "token_request_backoff_factor",
            "token_request_timeout",
            "max_retry_delay",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{CREDENTIALS_SECTION}.{name}", "expected a number >= 0.")
        self._check_transport_security()

    def _check_transport_security(self) -> None:
        parts = urlsplit(self.token_url)
        url = sanitize_url(self.token_url)
        if parts.scheme == "https":
            return
        if parts.scheme != "http" or not is_loopback_host(parts.hostname):
            raise AuthenticationError(
                f"Refusing to send OAuth2 client credentials to {url}: `token_url` must use"
                " https (plain http is only accepted for a loopback test server)."
            )
        if not os.environ.get("OAUTHLIB_INSECURE_TRANSPORT"):
            raise AuthenticationError(
                f"`token_url` {url} is plain http. This is only accepted for a loopback test"
                " server, and only when OAUTHLIB_INSECURE_TRANSPORT=1 is set in the environment."
            )

    def on_first_use(self) -> None:
        """Runs once, before the first token request (with `lock` held). Hook for subclasses."""

    # -- internals -------------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started.is_set():
            return
        with self._guard:
            if self._started.is_set():
                return
            self.validate_settings()
            install_log_redaction()
            # the client id is no real secret, but it is configured as one: keep it out too
            REDACTOR.remember(self.client_secret, self.client_id)
            with contextlib.suppress(UnicodeEncodeError):  # requests sends Basic auth as latin-1
                user, password = self._basic_credentials()
                basic = f"{user}:{password}".encode("latin-1")
                REDACTOR.remember(base64.b64encode(basic).decode("ascii"))
            self.on_first_use()
            self._started.set()

    def _scopes(self) -> list[str] | None:
        return self.scope.split() if self.scope else None

    def _basic_credentials(self) -> tuple[str, str]:
        """Client id and secret form-urlencoded for HTTP Basic, as RFC 6749 section 2.3.1 says.

        A no-op for the usual ids and secrets (letters, digits, `-._~`).
        """
        return quote_plus(self.client_id), quote_plus(self.client_secret)

    def _client_auth_kwargs(self) -> dict[str, Any]:
        """Arguments of requests-oauthlib's token calls that authenticate the client."""
        if self.client_auth == "basic":
            return {"auth": HTTPBasicAuth(*self._basic_credentials())}
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    def _token_endpoint(self) -> TokenEndpoint:
        """The token endpoint's client, made on first use from the resolved settings."""
        if self._endpoint is None:
            self._endpoint = TokenEndpoint(
                url=self.token_url,
                grant_type=self.grant_type,
                policy=RetryPolicy(
                    max_retries=self.token_request_max_retries,
                    backoff_factor=self.token_request_backoff_factor,
                    max_retry_delay=self.max_retry_delay,
                    timeout=self.token_request_timeout,
                ),
                clock=self.clock,
                refusal=self.token_error,
                settings_key=CREDENTIALS_SECTION,
            )
        return self._endpoint

    def _get_token_session(self) -> OAuth2Session:
        if self._token_session is None:
            self._token_session = self.build_token_session()
        return self._token_session

    def _refresh_after_rejection(self, rejected: str | None) -> str:
        """Refreshes after a 401, unless another thread already replaced the rejected token."""
        with self._guard:
            current = self._token
            if current is None or rejected is None or current.access_token == rejected:
                self.obtain_token()
            return self._require_token().access_token

    def _handle_401(self, response: Response, *_args: Any, **kwargs: Any) -> Response:
        """Response hook: on 401, refresh once and re-send; a second 401 is an error."""
        if response.status_code != HTTPStatus.UNAUTHORIZED:
            return response
        request = response.request
        method = request.method or "GET"
        url = sanitize_url(response.url or request.url or "")
        if getattr(request, _REAUTH_MARK, False):
            raise self._rejected_twice(method, url)
        logger.info("%s %s answered 401: refreshing the access token once.", method, url)
        # release the connection of the refused response before sending again
        _ = response.content
        response.close()
        access_token = self._refresh_after_rejection(_bearer_token_of(request))
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {access_token}"
        setattr(retry, _REAUTH_MARK, True)
        new_response: Response = response.connection.send(retry, **kwargs)
        new_response.history.append(response)
        new_response.request = retry
        if new_response.status_code == HTTPStatus.UNAUTHORIZED:
            _ = new_response.content
            new_response.close()
            raise self._rejected_twice(method, url)
        return new_response

    def _rejected_twice(self, method: str, url: str) -> AuthenticationError:
        return AuthenticationError(
            f"{method} {url} answered 401 Unauthorized again after a new access token was"
            f" obtained from {sanitize_url(self.token_url)}. The token endpoint accepts the"
            " credentials but the API does not: check the client's scopes and permissions"
            f" (`{CREDENTIALS_SECTION}.scope`) and that token and API belong together."
        )

    # -- copying and display ---------------------------------------------------------------------

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Copies the configuration into a new, unused auth object.

        dlt deep-copies rest_api configs (to mask secrets for validation). A lock cannot be
        copied and token state should not be duplicated, so the copy starts without a token,
        with its own lock, and shares the clock, the transport and the token store.
        """
        clone = type(self)()
        for field in dataclasses.fields(self):
            if field.name == "lock":
                continue
            value = getattr(self, field.name)
            if field.name not in self._SHARED_ON_COPY:
                value = copy.deepcopy(value, memo)
            setattr(clone, field.name, value)
        return clone

    def __repr__(self) -> str:
        """Shows the settings with every secret masked."""
        shown: list[str] = []
        for name, hint in self.get_resolvable_fields().items():
            if is_hint_not_resolvable(hint):
                continue
            value = getattr(self, name, None)
            if is_secret_hint(hint):
                shown.append(f"{name}={MASK!r}" if value else f"{name}=None")
            else:
                shown.append(f"{name}={value!r}")
        shown.extend(self._repr_extras())
        return f"{type(self).__name__}({', '.join(shown)})"

    def __str__(self) -> str:
        """Same as `repr()`: secrets masked."""
        return self.__repr__()

    def _repr_extras(self) -> list[str]:
        return []


@configspec
class OAuth2RefreshTokenAuth(OAuth2TokenAuthBase):
    """OAuth2 refresh-token grant, with rotated refresh tokens kept in a `TokenStore`.

    The refresh token in use is the stored one when the store has one that descends from the
    configured token, else the configured one. When the token endpoint returns a new refresh
    token it is saved to the store before the new access token is used. If saving fails, an
    `AuthenticationError` says where it could not be written (the old token is then revoked).

    Attributes:
        refresh_token: The refresh token issued to you. Put a re-issued token here: a token
            different from the one the stored token descends from replaces it.
        token_store_path: JSON file of the default `FileTokenStore`; by default
            `default_token_store_path(token_url, client_id)` under your home folder.
        token_store: A custom `TokenStore` (e.g. a secrets manager); replaces the file store.
    """

    refresh_token: TSecretStrValue = dlt.secrets.value
    token_store_path: str | None = None
    token_store: Annotated[TokenStore | None, NotResolved()] = None

    grant_type: ClassVar[str] = "refresh_token"
    _SHARED_ON_COPY: ClassVar[frozenset[str]] = frozenset(
        {"clock", "token_transport", "token_store"}
    )

    def __post_init__(self) -> None:
        """Creates the runtime state; the store is read on first use."""
        super().__post_init__()
        self._active_refresh_token: str | None = None
        self._refresh_token_origin = f"`{CREDENTIALS_SECTION}.refresh_token`"

    @property
    def resolved_token_store(self) -> TokenStore:
        """The store in use: `token_store`, or the file store, created on first access."""
        if self.token_store is None:
            path = self.token_store_path or default_token_store_path(self.token_url, self.client_id)
            self.token_store = FileTokenStore(path, origin_refresh_token=self.refresh_token)
        return self.token_store

    def validate_settings(self) -> None:
        """Also checks the token store.

        Raises:
            ConfigError: When `token_store` is not a `TokenStore`, or a setting is invalid.
        """
        super().validate_settings()
        if self.token_store is not None and not isinstance(self.token_store, TokenStore):
            raise ConfigError(
                "token_store",
                f"expected an object with load() and save(refresh_token), got"
                f" {type(self.token_store).__name__}.",
            )

    def on_first_use(self) -> None:
        """Picks the refresh token: the stored one if the store has one, else the configured.

        Raises:
            ConfigError: When there is neither.
            AuthenticationError: When the store cannot be read.
        """
        store = self.resolved_token_store
        REDACTOR.remember(self.refresh_token)
        if self._adopt_stored_token(store):
            return
        if not self.refresh_token:
            raise ConfigError(
                f"{CREDENTIALS_SECTION}.refresh_token",
                f"required but not set (env var {_ENV_PREFIX}REFRESH_TOKEN), and"
                f" {describe_store(store)} holds none.",
            )
        self._active_refresh_token = self.refresh_token

    def obtain_token(self) -> None:
        """Exchanges the newest refresh token, holding the store's lock when it has one.

        With a `LockableTokenStore` (the default file store), the store is read again inside
        its lock: another process sharing it may have rotated the refresh token since this
        one read it, and the token this process holds is then revoked.
        """
        store = self.resolved_token_store
        if not isinstance(store, LockableTokenStore):
            super().obtain_token()
            return
        with store.exclusive():
            self._adopt_stored_token(store)
            super().obtain_token()

    def _adopt_stored_token(self, store: TokenStore) -> bool:
        """Makes the store's refresh token the one in use, when the store holds one.

        Returns:
            Whether the store held a token.

        Raises:
            AuthenticationError: When the store cannot be read.
        """
        failure: AuthenticationError | None = None
        try:
            stored = store.load()
        except AuthenticationError:
            raise
        except Exception as exc:  # noqa: BLE001 - a custom store may raise anything
            failure = AuthenticationError(
                f"Could not read {describe_store(store)} ({type(exc).__name__}:"
                f" {REDACTOR.redact(str(exc))})."
            )
            chain_safely(failure, exc)
        if failure is not None:
            raise failure
        if not stored:
            return False
        if stored != self._active_refresh_token:
            REDACTOR.remember(stored)
            self._active_refresh_token = stored
            self._refresh_token_origin = describe_store(store)
        return True

    def build_oauth_client(self) -> Any:
        """Returns an oauthlib `WebApplicationClient`, the grant refresh tokens come from."""
        return WebApplicationClient(self.client_id, scope=self._scopes())

    def request_token(self, session: OAuth2Session) -> Mapping[str, Any]:
        """Exchanges the refresh token in use with `OAuth2Session.refresh_token`.

        Args:
            session: The token session.

        Returns:
            The token endpoint's answer, possibly with a new `refresh_token`.
        """
        token: Mapping[str, Any] = session.refresh_token(
            self.token_url,
            refresh_token=self._active_refresh_token,
            timeout=self.token_request_timeout,
            **self._client_auth_kwargs(),
        )
        return token

    def persist_token(self, token: Mapping[str, Any]) -> None:
        """Saves a rotated refresh token to the store, before the new access token is used.

        Args:
            token: The token endpoint's answer.

        Raises:
            AuthenticationError: When the store cannot save the new refresh token.
        """
        new_refresh_token = token.get("refresh_token")
        if not isinstance(new_refresh_token, str) or not new_refresh_token:
            return
        if new_refresh_token == self._active_refresh_token:
            return
        REDACTOR.remember(new_refresh_token)
        store = self.resolved_token_store
        # keep it in memory first: if saving fails, a retry in this process still works
        self._active_refresh_token = new_refresh_token
        failure: AuthenticationError | None = None
        try:
            store.save(new_refresh_token)
        except Exception as exc:  # noqa: BLE001 - a custom store may raise anything
            failure = AuthenticationError(
                "The token endpoint issued a new refresh token, but it could not be written to"
                f" {describe_store(store)} ({type(exc).__name__}: {REDACTOR.redact(str(exc))})."
                " The previous refresh token is now revoked, so the next run will fail with"
                f" invalid_grant: make the store writable, then issue a new refresh token and put"
                f" it in `{CREDENTIALS_SECTION}.refresh_token`."
            )
            chain_safely(failure, exc)
        if failure is not None:
            raise failure
        self._refresh_token_origin = describe_store(store)
        logger.info("Saved the rotated refresh token to %s.", describe_store(store))

    def token_error_guidance(self, error_code: str | None) -> str:
        """Adds what to do about a refused refresh token (`invalid_grant`).

        Args:
            error_code: The OAuth2 `error` of the answer, if any.

        Returns:
            Advice naming the config key and the store.
        """
        if error_code != "invalid_grant":
            return super().token_error_guidance(error_code)
        store = self.resolved_token_store
        advice = (
            f"The refresh token from {self._refresh_token_origin} is expired, revoked or was"
            " already used (providers that rotate refresh tokens revoke the old one at every"
            " refresh; an answer lost in transit loses its new token too). Issue a new refresh"
            " token and put it in"
            f" `{CREDENTIALS_SECTION}.refresh_token` (.dlt/secrets.toml or env var"
            f" {_ENV_PREFIX}REFRESH_TOKEN): a new configured token replaces the stored one."
        )
        if isinstance(store, FileTokenStore):
            return (
                f"{advice} If the configured token is still valid, delete the stale token"
                f" store file {store.path}."
            )
        return f"{advice} If the configured token is still valid, clear {describe_store(store)}."

    def _repr_extras(self) -> list[str]:
        store = self.token_store
        return [f"token_store={store!r}"] if store is not None else []


@configspec
class OAuth2ClientCredentialsAuth(OAuth2TokenAuthBase):
    """OAuth2 client-credentials grant (machine to machine), on the shared token lifecycle.

    Uses requests-oauthlib's `BackendApplicationClient` and `OAuth2Session.fetch_token`.
    Nothing is stored between runs: a new access token is requested on the first request.
    """

    grant_type: ClassVar[str] = "client_credentials"

    def build_oauth_client(self) -> Any:
        """Returns an oauthlib `BackendApplicationClient`."""
        return BackendApplicationClient(client_id=self.client_id, scope=self._scopes())

    def request_token(self, session: OAuth2Session) -> Mapping[str, Any]:
        """Requests a token with `OAuth2Session.fetch_token`.

        Args:
            session: The token session.

        Returns:
            The token endpoint's answer.
        """
        kwargs = self._client_auth_kwargs()
        if "client_secret" in kwargs:  # client authenticates in the body
            kwargs.pop("client_id")
            kwargs["include_client_id"] = True
        token: Mapping[str, Any] = session.fetch_token(
            self.token_url, timeout=self.token_request_timeout, **kwargs
        )
        return token
