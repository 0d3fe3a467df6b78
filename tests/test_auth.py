"""Unit tests of the OAuth2 token lifecycle, with a fake transport and a fake clock.

No sockets are opened: the token endpoint and the API are `requests` transport adapters.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus, urlsplit

import pytest
import requests
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client.client import RESTClient
from dlt.sources.rest_api import rest_api_source
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from sources.support_api.auth import (
    FileTokenStore,
    OAuth2ClientCredentialsAuth,
    OAuth2RefreshTokenAuth,
    OAuth2TokenAuthBase,
    TokenStore,
    default_token_store_path,
    refresh_token_fingerprint,
)
from sources.support_api.errors import AuthenticationError, ConfigError
from tests.helpers import chain_text

TOKEN_URL = "https://auth.example.test/oauth/token"
API_URL = "https://api.example.test"
CLIENT_ID = "client-id-4f1c9a"
CLIENT_SECRET = "client-secret-9d8e7f6a5b4c"
REFRESH_TOKEN = "refresh-configured-1a2b3c4d5e"

LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


@contextmanager
def allow_insecure_loopback_token_url(token_url: str) -> Iterator[None]:
    """Lets requests-oauthlib use a plain-http token URL on a loopback host (tests only).

    Product code never sets OAUTHLIB_INSECURE_TRANSPORT; tests that talk to the loopback
    sandbox set it for their own duration.
    """
    host = urlsplit(token_url).hostname
    if host not in LOOPBACK_HOSTS and not (host or "").startswith("127."):
        msg = f"only loopback token URLs may use plain http, not {token_url}"
        raise ValueError(msg)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        yield


# --- fakes --------------------------------------------------------------------------------------


class FakeClock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_response(
    request: PreparedRequest,
    adapter: Any,
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = Response()
    response.status_code = status
    response.reason = HTTPStatus(status).phrase
    response.raw = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json", **(headers or {})})
    response.url = request.url or ""
    response.request = request
    response.connection = adapter
    response.encoding = "utf-8"
    return response


class FakeAdapter(BaseAdapter):
    """A transport that answers in process; subclasses implement `handle`."""

    def __init__(self) -> None:
        super().__init__()
        self.send_options: list[dict[str, Any]] = []

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        options = {"stream": stream, "timeout": timeout, "verify": verify, "cert": cert}
        self.send_options.append({**options, "proxies": proxies})
        return self.handle(request)

    def handle(self, request: PreparedRequest) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self  # a fake server: dlt's config validation deep-copies the session


@dataclass
class TokenCall:
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class Reply:
    """A scripted token endpoint answer, served before the endpoint's normal behaviour."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeTokenEndpoint(FakeAdapter):
    """An OAuth2 token endpoint with single-use refresh tokens (rotation on by default)."""

    def __init__(
        self,
        *,
        expires_in: float | None = 3600,
        rotate: bool = True,
        refresh_tokens: tuple[str, ...] = (REFRESH_TOKEN,),
        events: list[str] | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__()
        self.expires_in = expires_in
        self.rotate = rotate
        self.valid_refresh_tokens = set(refresh_tokens)
        self.events = events if events is not None else []
        self.scope = scope
        self.calls: list[TokenCall] = []
        self.script: list[Reply | Exception] = []
        self.access_tokens: list[str] = []
        self.refresh_tokens: list[str] = []
        self.delay = 0.0
        self._lock = threading.Lock()

    def handle(self, request: PreparedRequest) -> Response:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        call = TokenCall(dict(parse_qsl(body)), dict(request.headers))
        with self._lock:
            self.calls.append(call)
            scripted = self.script.pop(0) if self.script else None
        if self.delay:
            threading.Event().wait(self.delay)  # real wait, even when time.sleep is patched
        if isinstance(scripted, Exception):
            raise scripted
        if scripted is not None:
            return make_response(request, self, scripted.status, scripted.body, scripted.headers)
        if not self._client_ok(call):
            return make_response(request, self, 401, {"error": "invalid_client"})
        with self._lock:
            return self._grant(request, call)

    def _client_ok(self, call: TokenCall) -> bool:
        scheme, _, value = call.headers.get("Authorization", "").partition(" ")
        if scheme == "Basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            return (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, CLIENT_SECRET)
        form = call.form
        return (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)

    def _grant(self, request: PreparedRequest, call: TokenCall) -> Response:
        payload: dict[str, Any] = {"token_type": "Bearer"}
        grant = call.form.get("grant_type")
        if grant == "refresh_token":
            presented = call.form.get("refresh_token", "")
            if presented not in self.valid_refresh_tokens:
                return make_response(
                    request,
                    self,
                    400,
                    {"error": "invalid_grant", "error_description": "refresh token revoked"},
                )
            if self.rotate:
                self.valid_refresh_tokens.discard(presented)
                new_refresh = f"refresh-rotated-{len(self.refresh_tokens) + 1:03d}-x7"
                self.valid_refresh_tokens.add(new_refresh)
                self.refresh_tokens.append(new_refresh)
                payload["refresh_token"] = new_refresh
        elif grant != "client_credentials":
            return make_response(request, self, 400, {"error": "unsupported_grant_type"})
        access = f"access-{len(self.access_tokens) + 1:03d}-q9z8y7"
        self.access_tokens.append(access)
        self.events.append(f"issued:{access}")
        payload["access_token"] = access
        if self.expires_in is not None:
            payload["expires_in"] = self.expires_in
        if self.scope is not None:
            payload["scope"] = self.scope
        return make_response(request, self, 200, payload)

    def secrets(self) -> list[str]:
        return [*self.access_tokens, *self.refresh_tokens]


class FakeApi(FakeAdapter):
    """A data API that accepts the access tokens its token endpoint issued."""

    def __init__(self, endpoint: FakeTokenEndpoint, events: list[str] | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.events = events if events is not None else endpoint.events
        self.revoked: set[str] = set()
        self.reject_all = False
        self.seen_tokens: list[str | None] = []
        self._lock = threading.Lock()

    def handle(self, request: PreparedRequest) -> Response:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        with self._lock:
            self.seen_tokens.append(token)
            self.events.append(f"api:{token}")
        valid = token in self.endpoint.access_tokens and token not in self.revoked
        if self.reject_all or not valid:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return make_response(request, self, 401, {"error": "unauthorized"}, challenge)
        return make_response(request, self, 200, {"data": [{"id": 1}], "next_cursor": None})


class MemoryStore:
    """A custom `TokenStore` (e.g. what a secrets manager adapter would look like)."""

    def __init__(self, token: str | None = None, events: list[str] | None = None) -> None:
        self.token = token
        self.events = events if events is not None else []
        self.fail_with: Exception | None = None

    def load(self) -> str | None:
        return self.token

    def save(self, refresh_token: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.append(f"save:{refresh_token}")
        self.token = refresh_token


@dataclass
class Harness:
    clock: FakeClock
    endpoint: FakeTokenEndpoint
    api: FakeApi
    events: list[str]
    session: requests.Session

    def client(self, auth: OAuth2TokenAuthBase) -> RESTClient:
        return RESTClient(base_url=API_URL, auth=auth, session=self.session)

    def get(self, auth: OAuth2TokenAuthBase, path: str = "/v1/tickets") -> Response:
        return self.client(auth).get(path)


@pytest.fixture
def harness() -> Harness:
    events: list[str] = []
    endpoint = FakeTokenEndpoint(events=events)
    api = FakeApi(endpoint)
    session = Client(raise_for_status=False).session  # dlt's retrying session, as RESTClient's
    session.mount(API_URL, api)
    return Harness(FakeClock(), endpoint, api, events, session)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records the waits tenacity asks for (its default nap calls `time.sleep`)."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def refresh_auth(h: Harness, tmp_path: Path, **kwargs: Any) -> OAuth2RefreshTokenAuth:
    settings: dict[str, Any] = {
        "token_url": TOKEN_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "token_store_path": str(tmp_path / "store" / "tokens.json"),
        "clock": h.clock,
        "token_transport": h.endpoint,
    }
    settings.update(kwargs)
    return OAuth2RefreshTokenAuth(**settings)


def client_credentials_auth(h: Harness, **kwargs: Any) -> OAuth2ClientCredentialsAuth:
    settings: dict[str, Any] = {
        "token_url": TOKEN_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "clock": h.clock,
        "token_transport": h.endpoint,
    }
    settings.update(kwargs)
    return OAuth2ClientCredentialsAuth(**settings)


def all_secrets(h: Harness) -> list[str]:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return [CLIENT_SECRET, REFRESH_TOKEN, basic, *h.endpoint.secrets()]


def assert_clean(text: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"secrets leaked: {len(leaked)}"


# --- lazy fetch, reuse, early refresh -----------------------------------------------------------


def test_token_is_fetched_lazily_on_first_request(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    assert harness.endpoint.calls == []
    assert harness.get(auth).status_code == 200
    assert len(harness.endpoint.calls) == 1
    assert harness.endpoint.calls[0].form["grant_type"] == "refresh_token"
    assert harness.api.seen_tokens == [harness.endpoint.access_tokens[0]]


def test_token_is_reused_while_valid(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    for _ in range(5):
        assert harness.get(auth).status_code == 200
        harness.clock.advance(600)  # 3000 s in all, well before 3600 - 60
    assert len(harness.endpoint.calls) == 1
    assert set(harness.api.seen_tokens) == {harness.endpoint.access_tokens[0]}


def test_token_is_refreshed_leeway_seconds_before_expiry(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path, refresh_leeway_seconds=60)
    harness.get(auth)
    harness.clock.advance(3539)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 1
    harness.clock.advance(1)  # 3540 = 3600 - 60
    harness.get(auth)
    assert len(harness.endpoint.calls) == 2
    assert harness.api.seen_tokens[-1] == harness.endpoint.access_tokens[1]


def test_leeway_is_capped_at_half_of_a_short_token_lifetime(
    harness: Harness, tmp_path: Path
) -> None:
    harness.endpoint.expires_in = 30
    auth = refresh_auth(harness, tmp_path, refresh_leeway_seconds=60)
    harness.get(auth)
    harness.clock.advance(14)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 1, "a 30 s token must be used for part of its life"
    harness.clock.advance(1)  # 15 s = 30 - min(60, 30 / 2)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 2


def test_missing_expires_in_uses_default_expiration(harness: Harness, tmp_path: Path) -> None:
    harness.endpoint.expires_in = None
    auth = refresh_auth(harness, tmp_path, default_token_expiration=600, refresh_leeway_seconds=0)
    harness.get(auth)
    harness.clock.advance(599)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 1
    harness.clock.advance(1)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 2


# --- 401 handling -------------------------------------------------------------------------------


def test_401_refreshes_once_and_retries(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    harness.get(auth)
    harness.api.revoked.add(harness.endpoint.access_tokens[0])  # server-side revocation

    response = harness.get(auth)

    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert len(harness.endpoint.calls) == 2
    assert harness.api.seen_tokens == [
        harness.endpoint.access_tokens[0],
        harness.endpoint.access_tokens[0],
        harness.endpoint.access_tokens[1],
    ]
    assert (
        response.request.headers["Authorization"] == f"Bearer {harness.endpoint.access_tokens[1]}"
    )


def test_second_401_raises_authentication_error_without_loop(
    harness: Harness, tmp_path: Path
) -> None:
    auth = refresh_auth(harness, tmp_path)
    harness.api.reject_all = True

    with pytest.raises(AuthenticationError) as raised:
        harness.get(auth, "/v1/tickets?api_key=hunter22&page=2")

    message = str(raised.value)
    assert "401" in message
    assert f"{API_URL}/v1/tickets?api_key=***&page=2" in message  # redacted with sanitize_url
    assert "hunter22" not in message
    assert len(harness.api.seen_tokens) == 2
    assert len(harness.endpoint.calls) == 2


def test_401_hook_runs_before_rest_client_raise_for_status(
    harness: Harness, tmp_path: Path
) -> None:
    auth = refresh_auth(harness, tmp_path)
    harness.get(auth)
    harness.api.revoked.add(harness.endpoint.access_tokens[0])
    pages = list(harness.client(auth).paginate("/v1/tickets", data_selector="data"))
    assert pages == [[{"id": 1}]]

    harness.api.reject_all = True
    with pytest.raises(AuthenticationError):
        list(harness.client(auth).paginate("/v1/tickets", data_selector="data"))


def test_401_does_not_refresh_again_when_token_already_replaced(
    harness: Harness, tmp_path: Path
) -> None:
    auth = refresh_auth(harness, tmp_path)
    stale = harness.session.prepare_request(
        requests.Request("GET", f"{API_URL}/v1/tickets", auth=auth)
    )
    first = harness.endpoint.access_tokens[0]
    harness.clock.advance(3600)
    auth.current_access_token()  # another thread refreshed meanwhile
    harness.api.revoked.add(first)

    response = harness.session.send(stale)

    assert response.status_code == 200
    assert len(harness.endpoint.calls) == 2, "the rejected token was already replaced"
    assert harness.api.seen_tokens == [first, harness.endpoint.access_tokens[1]]


def test_hook_is_registered_once_per_request(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    request = requests.Request("GET", f"{API_URL}/x").prepare()
    auth(request)
    auth(request)
    assert request.hooks["response"].count(auth._handle_401) == 1


# --- concurrency --------------------------------------------------------------------------------


@pytest.mark.parametrize("grant", ["refresh_token", "client_credentials"])
def test_concurrent_threads_make_exactly_one_token_request(
    harness: Harness, tmp_path: Path, grant: str
) -> None:
    auth: OAuth2TokenAuthBase = (
        refresh_auth(harness, tmp_path)
        if grant == "refresh_token"
        else client_credentials_auth(harness)
    )
    harness.endpoint.delay = 0.05
    threads_count = 12

    def burst() -> list[str]:
        barrier = threading.Barrier(threads_count)
        results: list[str] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait()
                results.append(auth.current_access_token())
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        return results

    assert set(burst()) == {harness.endpoint.access_tokens[0]}
    assert len(harness.endpoint.calls) == 1

    harness.clock.advance(3600)  # all threads find the token expired at once
    assert set(burst()) == {harness.endpoint.access_tokens[1]}
    assert len(harness.endpoint.calls) == 2


def test_concurrent_401s_refresh_once(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    harness.get(auth)
    harness.api.revoked.add(harness.endpoint.access_tokens[0])
    harness.endpoint.delay = 0.05
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def work() -> None:
        session = Client(raise_for_status=False).session
        session.mount(API_URL, harness.api)
        barrier.wait()
        statuses.append(RESTClient(API_URL, auth=auth, session=session).get("/x").status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    assert len(harness.endpoint.calls) == 2


# --- rotation and the token store ---------------------------------------------------------------


def test_rotated_refresh_token_is_saved_before_new_access_token_is_used(
    harness: Harness, tmp_path: Path
) -> None:
    store = MemoryStore(events=harness.events)
    auth = refresh_auth(harness, tmp_path, token_store=store)
    harness.get(auth)
    harness.clock.advance(3600)
    harness.get(auth)

    first_refresh, second_refresh = harness.endpoint.refresh_tokens
    first_access, second_access = harness.endpoint.access_tokens
    events = harness.events
    assert events.index(f"save:{first_refresh}") < events.index(f"api:{first_access}")
    assert events.index(f"save:{second_refresh}") < events.index(f"api:{second_access}")
    assert store.token == second_refresh
    assert harness.endpoint.calls[1].form["refresh_token"] == first_refresh


def test_failed_save_raises_and_new_access_token_is_not_used(
    harness: Harness, tmp_path: Path
) -> None:
    store = MemoryStore()
    store.fail_with = OSError("vault unavailable")
    auth = refresh_auth(harness, tmp_path, token_store=store)

    with pytest.raises(AuthenticationError) as raised:
        harness.get(auth)

    message = str(raised.value)
    assert "could not be written to the token store" in message
    assert "MemoryStore" in message
    assert "vault unavailable" in message
    assert "revoked" in message
    assert "sources.support_api.credentials.refresh_token" in message
    assert_clean(chain_text(raised.value), all_secrets(harness))
    assert harness.api.seen_tokens == []

    # the new refresh token was kept in memory: once the store works, the run can go on
    store.fail_with = None
    assert harness.get(auth).status_code == 200
    assert harness.endpoint.calls[1].form["refresh_token"] == harness.endpoint.refresh_tokens[0]


def test_failed_save_message_redacts_a_token_echoed_by_the_store(
    harness: Harness, tmp_path: Path
) -> None:
    store = MemoryStore()
    auth = refresh_auth(harness, tmp_path, token_store=store)

    def echoing_save(refresh_token: str) -> None:
        msg = f"cannot write {refresh_token}"
        raise RuntimeError(msg)

    store.save = echoing_save  # type: ignore[method-assign]  # a store with a careless message
    with pytest.raises(AuthenticationError) as raised:
        auth.current_access_token()
    assert_clean(chain_text(raised.value), all_secrets(harness))
    assert raised.value.__cause__ is None


def test_file_store_is_private_and_replaced_atomically(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store" / "tokens.json"
    replaced: list[tuple[Path, Path, int]] = []
    real_replace = os.replace

    def spy_replace(source: Any, target: Any) -> None:
        replaced.append((Path(source), Path(target), stat.S_IMODE(Path(source).stat().st_mode)))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy_replace)
    auth = refresh_auth(harness, tmp_path, token_store_path=str(path))
    harness.get(auth)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = json.loads(path.read_text())
    assert record["refresh_token"] == harness.endpoint.refresh_tokens[0]
    assert record["origin"] == refresh_token_fingerprint(REFRESH_TOKEN)
    [(source, target, mode)] = replaced
    assert target == path
    assert source.parent == path.parent, "temp file must be in the same folder"
    assert source != path
    assert mode == 0o600
    # no temp file left; the lock file beside the store is private and holds nothing
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]
    lock = path.with_name("tokens.json.lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert lock.stat().st_size == 0


def test_file_store_keeps_previous_record_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store" / "tokens.json"
    store = FileTokenStore(path, origin_refresh_token=REFRESH_TOKEN)
    store.save("refresh-first-abcdef")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        store.save("refresh-second-abcdef")

    assert store.load() == "refresh-first-abcdef"
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"], "temp file cleaned up"


def test_file_store_tightens_a_file_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("refresh-first-abcdef")
    path.chmod(0o644)
    store.save("refresh-second-abcdef")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_store_path_is_under_home_outside_the_project(
    harness: Harness, tmp_path: Path
) -> None:
    home = Path.home()  # conftest points HOME at a temp folder
    auth = refresh_auth(harness, tmp_path, token_store_path=None)
    harness.get(auth)

    expected = default_token_store_path(TOKEN_URL, CLIENT_ID)
    digest = __import__("hashlib").sha256(f"{TOKEN_URL}{CLIENT_ID}".encode()).hexdigest()[:16]
    assert expected == home / ".dlt" / "support_api" / "tokens" / f"{digest}.json"
    store = auth.resolved_token_store
    assert isinstance(store, FileTokenStore)
    assert store.path == expected
    assert json.loads(expected.read_text())["refresh_token"] == harness.endpoint.refresh_tokens[0]
    project_root = Path(__file__).resolve().parents[1]
    assert not expected.is_relative_to(project_root)


def test_stored_refresh_token_is_preferred_at_start(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "store" / "tokens.json"
    FileTokenStore(path, origin_refresh_token=REFRESH_TOKEN).save("refresh-stored-777777")
    harness.endpoint.valid_refresh_tokens = {"refresh-stored-777777"}  # configured one revoked

    auth = refresh_auth(harness, tmp_path, token_store_path=str(path))
    assert harness.get(auth).status_code == 200
    assert harness.endpoint.calls[0].form["refresh_token"] == "refresh-stored-777777"


def test_a_newly_configured_refresh_token_wins_and_resets_the_store(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "store" / "tokens.json"
    FileTokenStore(path, origin_refresh_token="refresh-old-config-1").save("refresh-stale-22222")
    reissued = "refresh-reissued-333333"
    harness.endpoint.valid_refresh_tokens = {reissued}

    auth = refresh_auth(harness, tmp_path, refresh_token=reissued, token_store_path=str(path))
    assert harness.get(auth).status_code == 200

    assert harness.endpoint.calls[0].form["refresh_token"] == reissued
    record = json.loads(path.read_text())
    assert record["origin"] == refresh_token_fingerprint(reissued)
    assert record["refresh_token"] == harness.endpoint.refresh_tokens[0]


def test_store_is_not_written_when_the_provider_does_not_rotate(
    harness: Harness, tmp_path: Path
) -> None:
    harness.endpoint.rotate = False
    path = tmp_path / "store" / "tokens.json"
    auth = refresh_auth(harness, tmp_path, token_store_path=str(path))
    harness.get(auth)
    harness.clock.advance(3600)
    harness.get(auth)
    assert not path.exists()
    assert [c.form["refresh_token"] for c in harness.endpoint.calls] == [REFRESH_TOKEN] * 2


def test_runs_sharing_a_file_store_each_refresh_with_the_newest_token(
    harness: Harness, tmp_path: Path
) -> None:
    # two runs (the backfill's windows, overlapping schedules) read the store at start; each
    # rotation revokes the token the other one holds
    path = tmp_path / "store" / "tokens.json"
    first = refresh_auth(harness, tmp_path, token_store_path=str(path))
    second = refresh_auth(harness, tmp_path, token_store_path=str(path))
    first._ensure_started()
    second._ensure_started()

    assert harness.get(first).status_code == 200
    assert harness.get(second).status_code == 200  # the configured token is revoked by now
    harness.clock.advance(3600)
    assert harness.get(first).status_code == 200  # so is the one `first` got

    rotated = harness.endpoint.refresh_tokens
    sent = [call.form["refresh_token"] for call in harness.endpoint.calls]
    assert sent == [REFRESH_TOKEN, rotated[0], rotated[1]]
    assert json.loads(path.read_text())["refresh_token"] == rotated[2]


def test_the_file_store_lock_holds_off_another_process(tmp_path: Path) -> None:
    path = tmp_path / "store" / "tokens.json"
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter running our own snippet
        [sys.executable, "-c", HOLD_STORE_LOCK, str(path)],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        acquired = threading.Event()

        def lock_here() -> None:
            with FileTokenStore(path).exclusive():
                acquired.set()

        waiter = threading.Thread(target=lock_here, daemon=True)
        waiter.start()
        assert not acquired.wait(0.5), "the lock was taken while another process held it"
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert acquired.wait(30), "the lock was not taken after the other process let it go"
        waiter.join(30)
    finally:
        holder.kill()
        holder.wait(30)


HOLD_STORE_LOCK = """
import sys
from sources.support_api.auth import FileTokenStore

with FileTokenStore(sys.argv[1]).exclusive():
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_custom_token_store_is_used(harness: Harness, tmp_path: Path) -> None:
    store = MemoryStore(token="refresh-in-vault-4444")
    harness.endpoint.valid_refresh_tokens = {"refresh-in-vault-4444"}
    assert isinstance(store, TokenStore)

    auth = refresh_auth(harness, tmp_path, token_store=store, token_store_path=None)
    harness.get(auth)

    assert harness.endpoint.calls[0].form["refresh_token"] == "refresh-in-vault-4444"
    assert store.token == harness.endpoint.refresh_tokens[0]
    assert not (Path.home() / ".dlt").exists(), "no file store when a custom store is given"


def test_an_object_that_is_no_token_store_is_refused(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path, token_store=object())
    with pytest.raises(ConfigError, match="load\\(\\) and save"):
        auth.current_access_token()


def test_unreadable_store_record_names_the_file(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "store" / "tokens.json"
    path.parent.mkdir()
    path.write_text("{not json")
    auth = refresh_auth(harness, tmp_path, token_store_path=str(path))
    with pytest.raises(AuthenticationError, match="Delete it") as raised:
        auth.current_access_token()
    assert str(path) in str(raised.value)
    assert harness.endpoint.calls == []


# --- token endpoint errors and retries ----------------------------------------------------------


def test_invalid_grant_raises_with_guidance_and_is_not_retried(
    harness: Harness, tmp_path: Path, sleeps: list[float]
) -> None:
    harness.endpoint.valid_refresh_tokens = set()
    auth = refresh_auth(harness, tmp_path)

    with pytest.raises(AuthenticationError) as raised:
        harness.get(auth)

    message = str(raised.value)
    assert "invalid_grant" in message
    assert "sources.support_api.credentials.refresh_token" in message
    assert "secrets.toml" in message
    assert str(tmp_path / "store" / "tokens.json") in message
    assert len(harness.endpoint.calls) == 1
    assert sleeps == []
    assert harness.api.seen_tokens == []


def test_invalid_grant_with_stored_token_names_the_store(
    harness: Harness, tmp_path: Path, sleeps: list[float]
) -> None:
    path = tmp_path / "store" / "tokens.json"
    FileTokenStore(path, origin_refresh_token=REFRESH_TOKEN).save("refresh-stored-revoked")
    harness.endpoint.valid_refresh_tokens = set()
    auth = refresh_auth(harness, tmp_path, token_store_path=str(path))
    with pytest.raises(AuthenticationError) as raised:
        auth.current_access_token()
    assert f"from the token store file {path}" in str(raised.value)
    assert f"delete the stale token store file {path}" in str(raised.value)


def test_invalid_client_raises_with_guidance_and_is_not_retried(
    harness: Harness, tmp_path: Path, sleeps: list[float]
) -> None:
    auth = refresh_auth(harness, tmp_path, client_secret="wrong-secret-value")
    with pytest.raises(AuthenticationError) as raised:
        auth.current_access_token()
    message = str(raised.value)
    assert "invalid_client" in message
    assert "client_auth" in message
    assert len(harness.endpoint.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("failures", "expected_waits"),
    [
        ([Reply(500)], [2]),
        ([Reply(500), Reply(502), Reply(503)], [2, 4, 8]),
        ([Reply(429, headers={"Retry-After": "7"})], [7]),
        ([Reply(429, headers={"Retry-After": "1000"})], [60]),  # capped at max_retry_delay
        ([requests.ConnectionError("reset")], [2]),
        (
            [
                requests.ConnectionError("reset"),
                requests.Timeout("slow"),
                requests.exceptions.ChunkedEncodingError("cut"),
            ],
            [2, 4, 8],
        ),
    ],
)
def test_transient_token_endpoint_failures_are_retried_with_backoff(
    harness: Harness,
    tmp_path: Path,
    sleeps: list[float],
    failures: list[Reply | Exception],
    expected_waits: list[float],
) -> None:
    harness.endpoint.script = list(failures)
    auth = refresh_auth(harness, tmp_path)
    assert harness.get(auth).status_code == 200
    assert sleeps == expected_waits
    assert len(harness.endpoint.calls) == len(failures) + 1


def test_token_endpoint_down_gives_up_after_max_retries(
    harness: Harness, tmp_path: Path, sleeps: list[float]
) -> None:
    harness.endpoint.script = [Reply(503)] * 10
    auth = refresh_auth(harness, tmp_path)
    with pytest.raises(AuthenticationError, match="answered HTTP 503 to 4 attempts"):
        auth.current_access_token()
    assert sleeps == [2, 4, 8]
    assert len(harness.endpoint.calls) == 4


def test_unreachable_token_endpoint_gives_up_after_max_retries(
    harness: Harness, tmp_path: Path, sleeps: list[float]
) -> None:
    harness.endpoint.script = [requests.ConnectionError("refused")] * 10
    auth = refresh_auth(
        harness, tmp_path, token_request_max_retries=2, token_request_backoff_factor=1
    )
    with pytest.raises(AuthenticationError, match="Could not reach the token endpoint") as raised:
        auth.current_access_token()
    assert isinstance(raised.value.__cause__, requests.ConnectionError)
    assert sleeps == [1, 2]
    assert len(harness.endpoint.calls) == 3


def test_token_request_timeout_is_passed_to_the_transport(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path, token_request_timeout=12.5)
    auth.current_access_token()
    assert [options["timeout"] for options in harness.endpoint.send_options] == [12.5]


def test_a_200_without_access_token_is_an_authentication_error(
    harness: Harness, tmp_path: Path
) -> None:
    harness.endpoint.script = [Reply(200, {"token_type": "Bearer"})]
    auth = refresh_auth(harness, tmp_path)
    with pytest.raises(AuthenticationError, match="not a token"):
        auth.current_access_token()


# --- client authentication ----------------------------------------------------------------------


def test_client_authenticates_in_the_body_by_default(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    auth.current_access_token()
    call = harness.endpoint.calls[0]
    assert call.form == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    assert "Authorization" not in call.headers
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_client_authenticates_with_http_basic(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path, client_auth="basic")
    auth.current_access_token()
    call = harness.endpoint.calls[0]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert call.headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in call.form
    assert call.form["refresh_token"] == REFRESH_TOKEN


def test_basic_credentials_are_form_encoded(harness: Harness, tmp_path: Path) -> None:
    odd_secret = "s3cr3t/with+odd:chars"
    auth = refresh_auth(harness, tmp_path, client_auth="basic", client_secret=odd_secret)
    with pytest.raises(AuthenticationError):  # the fake endpoint only knows CLIENT_SECRET
        auth.current_access_token()
    header = harness.endpoint.calls[0].headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(header).decode() == f"{CLIENT_ID}:{quote_plus(odd_secret)}"


@pytest.mark.parametrize("client_auth", ["body", "basic"])
def test_token_requests_never_carry_a_bearer_token(
    harness: Harness, tmp_path: Path, client_auth: str
) -> None:
    auth = refresh_auth(harness, tmp_path, client_auth=client_auth)
    harness.get(auth)
    harness.clock.advance(3600)
    harness.get(auth)
    harness.api.revoked.add(harness.endpoint.access_tokens[1])
    harness.get(auth)
    assert len(harness.endpoint.calls) == 3
    for call in harness.endpoint.calls:
        assert not call.headers.get("Authorization", "").lower().startswith("bearer")


def test_scope_is_requested_and_a_narrower_grant_is_accepted(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness.endpoint.scope = "tickets:read"
    auth = refresh_auth(harness, tmp_path, scope="tickets:read users:read")
    with caplog.at_level(logging.WARNING):
        assert harness.get(auth).status_code == 200
    assert harness.endpoint.calls[0].form["scope"] == "tickets:read users:read"
    assert "granted scope" in caplog.text
    assert harness.endpoint.refresh_tokens[0] in (tmp_path / "store" / "tokens.json").read_text()


# --- client credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("client_auth", ["body", "basic"])
def test_client_credentials_grant_shares_the_lifecycle(harness: Harness, client_auth: str) -> None:
    harness.endpoint.expires_in = 30
    auth = client_credentials_auth(harness, client_auth=client_auth)
    assert harness.endpoint.calls == []
    harness.get(auth)
    call = harness.endpoint.calls[0]
    assert call.form["grant_type"] == "client_credentials"
    if client_auth == "body":
        assert call.form["client_secret"] == CLIENT_SECRET
        assert "Authorization" not in call.headers
    else:
        assert call.headers["Authorization"].startswith("Basic ")
        assert "client_secret" not in call.form

    harness.clock.advance(14)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 1
    harness.clock.advance(1)
    harness.get(auth)
    assert len(harness.endpoint.calls) == 2

    harness.api.revoked.add(harness.endpoint.access_tokens[1])
    assert harness.get(auth).status_code == 200
    assert len(harness.endpoint.calls) == 3


def test_client_credentials_invalid_client(harness: Harness, sleeps: list[float]) -> None:
    auth = client_credentials_auth(harness, client_secret="not-the-secret")
    with pytest.raises(AuthenticationError, match="invalid_client") as raised:
        auth.current_access_token()
    assert "client_credentials" in str(raised.value)
    assert sleeps == []


# --- transport security -------------------------------------------------------------------------


def test_plain_http_token_url_is_refused_for_remote_hosts(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # even when set
    auth = refresh_auth(harness, tmp_path, token_url="http://auth.example.test/oauth/token")
    with pytest.raises(AuthenticationError, match="must use https"):
        auth.current_access_token()
    assert harness.endpoint.calls == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "[::1]", "localhost"])
def test_plain_http_loopback_token_url_needs_the_test_switch(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    url = f"http://{host}:8080/oauth/token"
    auth = refresh_auth(harness, tmp_path, token_url=url)
    with pytest.raises(AuthenticationError, match="OAUTHLIB_INSECURE_TRANSPORT"):
        auth.current_access_token()

    with allow_insecure_loopback_token_url(url):
        auth = refresh_auth(harness, tmp_path, token_url=url)
        assert auth.current_access_token() == harness.endpoint.access_tokens[0]
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_insecure_helper_refuses_remote_hosts() -> None:
    with (
        pytest.raises(ValueError, match="loopback"),
        allow_insecure_loopback_token_url("http://example.com/oauth/token"),
    ):
        pass


# --- configuration ------------------------------------------------------------------------------


def test_resolves_from_dlt_config(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = "SOURCES__SUPPORT_API__CREDENTIALS__"
    for key, value in {
        "TOKEN_URL": TOKEN_URL,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REFRESH_TOKEN": REFRESH_TOKEN,
        "CLIENT_AUTH": "basic",
        "REFRESH_LEEWAY_SECONDS": "30",
        "TOKEN_STORE_PATH": "/tmp/somewhere.json",  # noqa: S108 - only resolved, never written
    }.items():
        monkeypatch.setenv(prefix + key, value)
    auth = resolve_configuration(OAuth2RefreshTokenAuth(), sections=("sources", "support_api"))
    assert auth.client_auth == "basic"
    assert auth.refresh_leeway_seconds == 30.0
    assert auth.refresh_token == REFRESH_TOKEN
    assert auth.token_store_path == "/tmp/somewhere.json"  # noqa: S108
    assert auth.token_store is None
    assert auth.clock is time.time


def test_missing_refresh_token_is_reported_by_dlt(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = "SOURCES__SUPPORT_API__CREDENTIALS__"
    monkeypatch.setenv(prefix + "TOKEN_URL", TOKEN_URL)
    monkeypatch.setenv(prefix + "CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv(prefix + "CLIENT_SECRET", CLIENT_SECRET)
    with pytest.raises(ConfigFieldMissingException) as raised:
        resolve_configuration(OAuth2RefreshTokenAuth(), sections=("sources", "support_api"))
    assert "refresh_token" in str(raised.value)
    cc = resolve_configuration(OAuth2ClientCredentialsAuth(), sections=("sources", "support_api"))
    assert cc.client_id == CLIENT_ID


def test_missing_settings_are_config_errors_on_first_use(harness: Harness, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"credentials\.token_url"):
        refresh_auth(harness, tmp_path, token_url=None).current_access_token()
    with pytest.raises(ConfigError, match=r"credentials\.refresh_token"):
        refresh_auth(harness, tmp_path, refresh_token=None).current_access_token()
    with pytest.raises(ConfigError, match="client_auth"):
        refresh_auth(harness, tmp_path, client_auth="header").current_access_token()


def test_deepcopy_is_an_unused_copy_sharing_clock_and_store(
    harness: Harness, tmp_path: Path
) -> None:
    auth = refresh_auth(harness, tmp_path)
    auth.current_access_token()
    clone = copy.deepcopy(auth)
    assert clone is not auth
    assert clone.client_secret == CLIENT_SECRET
    assert clone.clock is auth.clock
    assert clone.token_store is auth.token_store
    assert clone.lock is not auth.lock
    assert clone.is_token_expired()
    clone["client_secret"] = "c*****t"  # what dlt's rest_api validation does to its copy
    assert auth.client_secret == CLIENT_SECRET
    assert not auth.is_token_expired()


def test_rest_api_source_accepts_the_auth_object(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    source = rest_api_source(
        {
            "client": {"base_url": API_URL, "auth": auth, "session": harness.session},
            "resources": [
                {
                    "name": "tickets",
                    "endpoint": {"path": "/v1/tickets", "data_selector": "data"},
                }
            ],
        }
    )
    assert harness.endpoint.calls == [], "building the source requests nothing"
    assert list(source.resources["tickets"]) == [{"id": 1}]
    assert len(harness.endpoint.calls) == 1


# --- secrets never shown ------------------------------------------------------------------------


def test_repr_and_str_mask_secrets(harness: Harness, tmp_path: Path) -> None:
    auth = refresh_auth(harness, tmp_path)
    harness.get(auth)
    cc = client_credentials_auth(harness)
    harness.get(cc)
    for obj in (auth, cc, auth.resolved_token_store, auth._token):
        for text in (repr(obj), str(obj), f"{obj}"):
            assert_clean(text, [*all_secrets(harness), CLIENT_ID])
    assert "token_url='https://auth.example.test/oauth/token'" in repr(auth)
    assert "client_secret='***'" in str(auth)
    assert "refresh_token='***'" in repr(auth)


def test_error_messages_never_contain_secrets(
    harness: Harness, tmp_path: Path, sleeps: list[float]
) -> None:
    errors: list[BaseException] = []
    echoing = {
        "error": "invalid_grant",
        "error_description": f"token {REFRESH_TOKEN} revoked; client {CLIENT_SECRET}",
    }
    scenarios: list[Callable[[], object]] = []

    def invalid_grant_echo() -> object:
        harness.endpoint.script = [Reply(400, echoing)]
        return refresh_auth(harness, tmp_path).current_access_token()

    def unknown_400_echo() -> object:
        harness.endpoint.script = [Reply(400, {"detail": f"bad refresh_token={REFRESH_TOKEN}"})]
        return refresh_auth(harness, tmp_path).current_access_token()

    def server_down() -> object:
        harness.endpoint.script = [Reply(500, {"echo": CLIENT_SECRET})] * 4
        return refresh_auth(harness, tmp_path).current_access_token()

    def rejected_twice() -> object:
        harness.api.reject_all = True
        return harness.get(refresh_auth(harness, tmp_path, token_store_path=None))

    scenarios.extend([invalid_grant_echo, unknown_400_echo, server_down, rejected_twice])
    for scenario in scenarios:
        with pytest.raises(AuthenticationError) as raised:
            scenario()
        errors.append(raised.value)
    secrets = all_secrets(harness)
    for error in errors:
        assert_clean(chain_text(error), secrets)
    assert "invalid_grant: token *** revoked; client ***" in str(errors[0])


def test_debug_logs_never_contain_secrets(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("requests_oauthlib", "oauthlib", "urllib3", "sources.support_api.auth"):
        caplog.set_level(logging.DEBUG, logger=name)

    auth = refresh_auth(harness, tmp_path, client_auth="basic")
    harness.endpoint.script = [Reply(503)]
    harness.get(auth)  # lazy fetch after one retry, rotation saved
    harness.clock.advance(3600)
    harness.get(auth)  # early refresh
    harness.api.revoked.add(harness.endpoint.access_tokens[-1])
    harness.get(auth)  # 401 re-auth
    body_auth = refresh_auth(
        harness,
        tmp_path,
        refresh_token=harness.endpoint.refresh_tokens[-1],
        token_store_path=str(tmp_path / "other.json"),
    )
    harness.get(body_auth)  # client secret in the form body
    cc = client_credentials_auth(harness)
    harness.get(cc)
    harness.endpoint.valid_refresh_tokens = set()
    harness.clock.advance(3600)
    with pytest.raises(AuthenticationError):
        body_auth.current_access_token()

    assert len(harness.endpoint.calls) == 7
    oauth_records = [r for r in caplog.records if r.name.startswith("requests_oauthlib")]
    assert len(oauth_records) > 20, "the scan must see requests-oauthlib's DEBUG records"
    secrets = [*all_secrets(harness), harness.endpoint.refresh_tokens[-1]]
    for record in caplog.records:
        assert_clean(record.getMessage(), secrets)
        assert_clean(str(record.args), secrets)
        assert_clean(record.exc_text or "", secrets)
    assert_clean(caplog.text, secrets)
    assert any("***" in r.getMessage() for r in oauth_records)


def test_log_filter_is_installed_once_per_logger(harness: Harness, tmp_path: Path) -> None:
    refresh_auth(harness, tmp_path).current_access_token()
    client_credentials_auth(harness).current_access_token()
    for name in ("requests_oauthlib", "requests_oauthlib.oauth2_session", "oauthlib"):
        filters = logging.getLogger(name).filters
        redactors = [f for f in filters if type(f).__name__ == "Redactor"]
        assert len(redactors) == 1, name
