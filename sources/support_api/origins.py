"""Which hosts may receive the source's credentials, and over which scheme.

A source that carries credentials (an auth object, or a header that holds a key or token)
sends requests only to the origin of its `base_url` (scheme, host and port) and to the hosts
listed in `allowed_hosts`. A next link, a child URL or a redirect that points anywhere else is
refused before anything is sent: a misconfigured or compromised API must not be able to hand
the customer's credentials to a third party by naming another host. A redirect from `http` to
`https` on the API's own host stays with the API.

Credentials travel over `https` only, except to loopback addresses (test rigs on this machine)
or when `allow_insecure_http` is set, which logs a warning once per base URL.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from dlt.sources.helpers.rest_client.redaction import sanitize_url

from .errors import ConfigError

logger = logging.getLogger(__name__)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_HOST_ENTRY: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")
"""An `allowed_hosts` entry: a host name, IPv4 or bracketed IPv6 address, and maybe a port."""
_warned_insecure: set[str] = set()
_warned_lock = threading.Lock()


def is_loopback_host(host: str | None) -> bool:
    """Whether a host name or address is this machine's loopback (127.0.0.0/8, ::1, localhost).

    Args:
        host: A host name or IP address, as `urlsplit(...).hostname` gives it.

    Returns:
        True for loopback hosts.
    """
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a URL, the unit a browser or an API trusts."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of a URL; the port defaults to the scheme's.

        Args:
            url: An absolute URL.

        Returns:
            Its origin (an empty host for a URL without one).
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:  # a port that is not a number: no origin matches it
            port = -1
        return cls(scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, -1))

    @property
    def netloc(self) -> str:
        """`host` or `host:port` when the port is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS.get(self.scheme):
            return host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class OriginPolicy:
    """Where the source's requests may go, and what a refused one is told.

    Attributes:
        base: The origin of `base_url`.
        allowed_hosts: Further hosts as `(host, port)`, lower case; port None for every port.
        allow_insecure_http: Credentials may travel over plain http to any allowed host.
        guarded: The source sends credentials; without them every host is allowed, as in
            plain dlt, since there is nothing to leak.
        hosts_key: Where `allowed_hosts` is set, for messages.
    """

    base: Origin
    allowed_hosts: tuple[tuple[str, int | None], ...] = ()
    allow_insecure_http: bool = False
    guarded: bool = True
    hosts_key: str = "client.allowed_hosts"

    @classmethod
    def from_config(
        cls,
        base_url: str,
        allowed_hosts: Any,
        allow_insecure_http: Any,
        guarded: bool,
        key_prefix: str = "client",
    ) -> OriginPolicy:
        """Validates the settings and refuses a plain-http `base_url` that would get secrets.

        Args:
            base_url: The API root.
            allowed_hosts: A list of `host` or `host:port` strings, or None.
            allow_insecure_http: Whether credentials may go over plain http beyond loopback.
            guarded: Whether the source sends credentials.
            key_prefix: Where the settings sit (`client` in a dict), for error messages.

        Returns:
            The policy.

        Raises:
            ConfigError: On a malformed host entry, a non-boolean flag, or credentials that
                would be sent over plain http to a host other than loopback.
        """
        prefix = f"{key_prefix}." if key_prefix else ""
        if allow_insecure_http is None:
            allow_insecure_http = False
        if not isinstance(allow_insecure_http, bool):
            raise ConfigError(
                f"{prefix}allow_insecure_http",
                f"expected true or false, got `{allow_insecure_http!r}`.",
            )
        hosts = _checked_hosts(allowed_hosts, f"{prefix}allowed_hosts")
        policy = cls(
            Origin.of(base_url), hosts, allow_insecure_http, guarded, f"{prefix}allowed_hosts"
        )
        if guarded and policy.base.scheme == "http" and not is_loopback_host(policy.base.host):
            if not allow_insecure_http:
                raise ConfigError(
                    f"{prefix}base_url",
                    f"`{sanitize_url(base_url)}` uses plain http, which would send the"
                    " credentials unencrypted. Use https; for a test rig that only speaks http,"
                    f" set `{prefix}allow_insecure_http` to true.",
                )
            _warn_insecure_once(base_url)
        return policy

    def refusal(self, url: str) -> str | None:
        """Why a request to `url` must not be sent, or None when it may.

        Args:
            url: The request URL.

        Returns:
            A sentence naming the host and how to allow it, or None.
        """
        if not self.guarded:
            return None
        origin = Origin.of(url)
        if not self._trusted(origin):
            return (
                f"`{origin.netloc}` is not the API's host `{self.base.netloc}`, and the request"
                " would carry the source's credentials to it. Nothing was sent. If that host"
                f" belongs to the API, add `{origin.netloc}` (or `{origin.host}` for every port)"
                f" to `{self.hosts_key}`."
            )
        if origin.scheme != "https" and not self._plain_http_ok(origin):
            return (
                f"`{origin.netloc}` would get the source's credentials over plain http"
                f" ({sanitize_url(url).split('?')[0]}). Nothing was sent."
            )
        return None

    def keeps_credentials(self, old_url: str, new_url: str) -> bool:
        """Whether a redirect from `old_url` to `new_url` keeps its `Authorization` header.

        Usable as `requests.Session.should_strip_auth` (negated there): requests strips the
        header whenever the host changes, so a redirect to an allowed host would arrive
        without credentials.

        Args:
            old_url: The URL that answered with the redirect.
            new_url: Where it points.

        Returns:
            True when both are allowed origins for the credentials.
        """
        del old_url
        return self.guarded and self.refusal(new_url) is None

    def _trusted(self, origin: Origin) -> bool:
        if origin == self.base:
            return True
        if origin.host == self.base.host and self.base.scheme == "http":
            # the API's own host moving its caller from http to https
            return origin.scheme == "https" and origin.port == _DEFAULT_PORTS["https"]
        return any(
            host == origin.host and port in (None, origin.port) for host, port in self.allowed_hosts
        )

    def _plain_http_ok(self, origin: Origin) -> bool:
        return self.allow_insecure_http or is_loopback_host(origin.host)


def _checked_hosts(value: Any, key_path: str) -> tuple[tuple[str, int | None], ...]:
    """Parses `allowed_hosts` entries into `(host, port or None for every port)`."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(
            key_path, f"expected a list of `host` or `host:port` strings, got `{value!r}`."
        )
    hosts = []
    for index, entry in enumerate(value):
        if not isinstance(entry, str) or not _HOST_ENTRY.fullmatch(entry):
            raise ConfigError(
                f"{key_path}[{index}]",
                f"expected `host` or `host:port` (no scheme, no path), got `{entry!r}`.",
            )
        parts = urlsplit(f"//{entry}")
        hosts.append(((parts.hostname or "").lower(), parts.port))
    return tuple(hosts)


def _warn_insecure_once(base_url: str) -> None:
    with _warned_lock:
        if base_url in _warned_insecure:
            return
        _warned_insecure.add(base_url)
    logger.warning(
        "support_api sends credentials over plain http to %s (`allow_insecure_http` is set):"
        " anyone on the network path can read them. Use it for test rigs only.",
        sanitize_url(base_url),
    )
