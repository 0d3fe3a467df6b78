"""OAuth2 token lifecycle pinned by cassettes: expiry, 401 re-authentication, rotation, retries.

Token expiry is judged by a fake clock shared by the auth object (its `clock` field) and, while
recording, the sandbox; nothing waits. Tokens in the cassettes are placeholders
(`REDACTED-access-<n>`, `REDACTED-refresh-<n>`, numbered in order of appearance), so on replay
the client sends, and stores, what the cassette says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dlt.extract import DltSource

from sources.support_api import (
    OAuth2ClientCredentialsAuth,
    OAuth2RefreshTokenAuth,
    support_api,
    support_api_from_config,
)
from sources.support_api.auth import FileTokenStore
from tests.cassette_tests.cassette_support import exchanges
from tests.helpers import make_pipeline, table_ids
from tests.sandbox import FakeClock, Fault

pytestmark = [pytest.mark.vcr, pytest.mark.usefixtures("insecure_loopback_oauth")]

SEED = 31
TOKEN_PATH = "/oauth/token"


def refresh_auth(api, tmp_path, clock: FakeClock | None = None) -> OAuth2RefreshTokenAuth:
    return OAuth2RefreshTokenAuth(
        token_url=api.url_for(TOKEN_PATH),
        client_id=api.secrets.client_id,
        client_secret=api.secrets.client_secret,
        refresh_token=api.secrets.refresh_token,
        token_store_path=str(tmp_path / "token_store.json"),
        clock=clock or FakeClock(),
    )


def after_first_row(action: Callable[[], Any]) -> Callable[[Any], Any]:
    """A map step that runs `action` once, after the first page arrived, before the next one.

    Only with `parallelized=False`: a parallelized resource may fetch the next page while the
    map step still runs, and the cassette would then depend on thread timing.
    """
    done = False

    def step(row: Any) -> Any:
        nonlocal done
        if not done:
            done = True
            action()
        return row

    return step


def customers_walk(api, auth) -> DltSource:
    """Customers in pages of 10, extracted in the calling thread (see `after_first_row`)."""
    config = {
        "client": {"base_url": api.url, "auth": auth},
        "resources": [
            {
                "name": "customers",
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {
                    "path": "/v1/customers",
                    "data_selector": "data",
                    "paginator": {
                        "type": "cursor",
                        "cursor_path": "next_cursor",
                        "cursor_param": "cursor",
                        "limit": 10,
                    },
                },
            }
        ],
    }
    return support_api_from_config(config, parallelized=False)


def calls(cassette) -> list[tuple[str, str, int]]:
    return [(e.method, e.path, e.status) for e in exchanges(cassette)]


def bearer(exchange):
    return exchange.headers["Authorization"].removeprefix("Bearer ")


def test_expired_access_token_is_refreshed_before_the_next_page(sandbox_api, vcr, tmp_path):
    clock = FakeClock()
    api = sandbox_api(
        seed=SEED, size=60, shape="desk", auth="oauth2", clock=clock, access_token_ttl=600
    )
    source = customers_walk(api, refresh_auth(api, tmp_path, clock))
    source.resources["customers"].add_map(after_first_row(lambda: clock.advance(600)))
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)

    assert table_ids(pipeline, "customers") == sorted(api.dataset.ids("customers"))
    assert calls(vcr) == [
        ("POST", TOKEN_PATH, 200),
        ("GET", "/v1/customers", 200),
        ("POST", TOKEN_PATH, 200),  # no 401: the fake clock said the token expired
        ("GET", "/v1/customers", 200),
        ("GET", "/v1/customers", 200),
    ]
    first_token, page_1, second_token, page_2, page_3 = exchanges(vcr)
    assert first_token.body["expires_in"] == 600
    assert first_token.form["grant_type"] == "refresh_token"
    assert bearer(page_1) == first_token.body["access_token"] == "REDACTED-access-1"
    assert bearer(page_2) == bearer(page_3) == second_token.body["access_token"]
    assert second_token.body["access_token"] == "REDACTED-access-2"
    # the single-use refresh token rotated: the second refresh sends the first answer's token
    assert second_token.form["refresh_token"] == first_token.body["refresh_token"]
    assert first_token.form["refresh_token"] != second_token.form["refresh_token"]


def test_401_refreshes_the_token_once_and_resends_the_request(sandbox_api, vcr, tmp_path):
    api = sandbox_api(seed=SEED, size=60, shape="desk", auth="oauth2")
    source = customers_walk(api, refresh_auth(api, tmp_path))
    # the server revokes the access token while the client still thinks it valid
    source.resources["customers"].add_map(after_first_row(api.expire_access_tokens))
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)

    assert table_ids(pipeline, "customers") == sorted(api.dataset.ids("customers"))
    assert calls(vcr) == [
        ("POST", TOKEN_PATH, 200),
        ("GET", "/v1/customers", 200),
        ("GET", "/v1/customers", 401),
        ("POST", TOKEN_PATH, 200),
        ("GET", "/v1/customers", 200),
        ("GET", "/v1/customers", 200),
    ]
    _, _, refused, new_token, resent, _ = exchanges(vcr)
    assert refused.response_headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert bearer(refused) == "REDACTED-access-1"
    assert resent.query == refused.query
    assert bearer(resent) == new_token.body["access_token"] == "REDACTED-access-2"


def test_rotated_refresh_token_is_stored_and_used_by_the_next_run(sandbox_api, vcr, tmp_path):
    api = sandbox_api(seed=SEED, size=60, shape="desk", auth="oauth2")
    auth = refresh_auth(api, tmp_path)
    store = FileTokenStore(tmp_path / "token_store.json", api.secrets.refresh_token)
    pipeline = make_pipeline(tmp_path)

    def issued_refresh_token(run: int):
        """The refresh token issued last: the sandbox's while recording, else the cassette's."""
        if api.recording:
            return api.current_refresh_token()
        return exchanges(vcr, TOKEN_PATH)[run].body["refresh_token"]

    pipeline.run(
        support_api(base_url=api.url, credentials=auth, resources=["agents"], concurrency=1)
    )
    assert store.load() == issued_refresh_token(0)
    pipeline.run(
        support_api(base_url=api.url, credentials=auth, resources=["agents"], concurrency=1)
    )
    assert store.load() == issued_refresh_token(1)

    first, second = exchanges(vcr, TOKEN_PATH)
    assert first.form["refresh_token"] == "REDACTED-refresh-1"  # the configured token
    assert first.body["refresh_token"] == "REDACTED-refresh-2"
    assert second.form["refresh_token"] == "REDACTED-refresh-2"  # read back from the store
    assert second.body["refresh_token"] == "REDACTED-refresh-3"
    assert table_ids(pipeline, "agents") == sorted(api.dataset.ids("agents"))


def test_token_endpoint_503_and_429_are_retried_with_backoff_and_retry_after(
    sandbox_api, vcr, tmp_path, retry_sleeps
):
    api = sandbox_api(seed=SEED, size=60, shape="desk", auth="oauth2")
    api.inject(TOKEN_PATH, [Fault(status=503), Fault(status=429, retry_after=5)])
    credentials = OAuth2ClientCredentialsAuth(
        token_url=api.url_for(TOKEN_PATH),
        client_id=api.secrets.client_id,
        client_secret=api.secrets.client_secret,
        client_auth="basic",
    )
    pipeline = make_pipeline(tmp_path)
    pipeline.run(
        support_api(base_url=api.url, credentials=credentials, resources=["agents"], concurrency=1)
    )

    assert retry_sleeps == [2, 5]
    assert calls(vcr) == [
        ("POST", TOKEN_PATH, 503),
        ("POST", TOKEN_PATH, 429),
        ("POST", TOKEN_PATH, 200),
        ("GET", "/v1/agents", 200),
    ]
    token = exchanges(vcr, TOKEN_PATH)[-1]
    assert token.form == {"grant_type": "client_credentials"}
    assert token.headers["Authorization"] == "Basic REDACTED-basic-auth-1"
    assert table_ids(pipeline, "agents") == sorted(api.dataset.ids("agents"))
