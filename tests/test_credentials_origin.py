"""Credentials go only to the API they belong to, redirects work, and failures leak nothing.

Two loopback hosts stand for the API (127.0.0.1) and a third party (127.0.0.2). Every check
looks at what each host received on the wire, not at cassettes: a refused request must not
have reached the other host at all, an allowed one must have carried the credentials.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from sources.support_api import ConfigError, support_api, support_api_from_config
from sources.support_api.errors import RedirectLoopError, UntrustedHostError
from sources.support_api.origins import Origin, OriginPolicy
from tests.fake_api import Host, Route, json_page, loopback_hosts
from tests.helpers import chain_text, exception_chain, find_cause, make_pipeline, table_ids

API_KEY = "key-7d1f0c2a9b8e4d3c"
BEARER = "bearer-5e6f7a8b9c0d1e2f"
PASSWORD = "pw-3c4d5e6f7a8b9c0d"
CLIENT_SECRET = "client-secret-0a1b2c3d4e5f"
ACCESS_TOKEN = "access-9f8e7d6c5b4a3210"

hosts = loopback_hosts
"""The fake APIs of each test (a fixture)."""

KINDS = ("api_key_query", "api_key_header", "bearer", "http_basic", "oauth2")


def credentials_seen(host: Host) -> list[str]:
    """Every credential value that reached `host`, in a header or the query."""
    secrets = (API_KEY, BEARER, ACCESS_TOKEN, _basic())
    return [secret for value in host.values_seen() for secret in secrets if secret in value]


def _basic() -> str:
    return base64.b64encode(f"agent:{PASSWORD}".encode()).decode()


def token_route(host: Host, path: str, query: dict[str, list[str]]):
    if path == "/oauth/token":
        return 200, {}, json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 3600}).encode()
    return 404, {}, b"{}"


def auth_block(kind: str, token_url: str | None = None) -> dict[str, Any]:
    if kind == "api_key_query":
        return {"type": "api_key", "name": "api_key", "api_key": API_KEY, "location": "query"}
    if kind == "api_key_header":
        return {"type": "api_key", "name": "X-API-Key", "api_key": API_KEY, "location": "header"}
    if kind == "bearer":
        return {"type": "bearer", "token": BEARER}
    if kind == "http_basic":
        return {"type": "http_basic", "username": "agent", "password": PASSWORD}
    assert token_url is not None
    return {
        "type": "oauth2",
        "client_id": "support-client",
        "client_secret": CLIENT_SECRET,
        "token_url": token_url,
    }


def secrets_of(kind: str) -> list[str]:
    return {
        "api_key_query": [API_KEY],
        "api_key_header": [API_KEY],
        "bearer": [BEARER],
        "http_basic": [PASSWORD, _basic()],
        "oauth2": [CLIENT_SECRET, ACCESS_TOKEN],
    }[kind]


def config(
    base_url: str,
    kind: str,
    resources: list[dict[str, Any]],
    token_url: str | None = None,
    **client: Any,
) -> dict[str, Any]:
    return {
        "client": {"base_url": base_url, "auth": auth_block(kind, token_url), **client},
        "resource_defaults": {
            "primary_key": "id",
            "endpoint": {"error_handler": {"max_retries": 0}},
        },
        "resources": resources,
    }


def link_resource(path: str = "/v1/tickets") -> dict[str, Any]:
    return {
        "name": "tickets",
        "endpoint": {
            "path": path,
            "data_selector": "data",
            "paginator": {"type": "json_link", "next_url_path": "next"},
        },
    }


def run(tmp_path: Path, source: Any) -> Any:
    pipeline = make_pipeline(tmp_path)
    pipeline.run(source)
    return pipeline


def run_failing(tmp_path: Path, source: Any) -> PipelineStepFailed:
    with pytest.raises(PipelineStepFailed) as raised:
        run(tmp_path, source)
    return raised.value


# --- reaching another host --------------------------------------------------------------------


def next_link_api(other: Callable[[], Host]) -> Route:
    def route(host: Host, path: str, query: dict[str, list[str]]):
        if path == "/oauth/token":
            return token_route(host, path, query)
        return json_page([{"id": 1}], next=f"{other().origin}/v1/tickets?page=2")

    return route


def redirect_api(other: Callable[[], Host]) -> Route:
    def route(host: Host, path: str, query: dict[str, list[str]]):
        if path == "/oauth/token":
            return token_route(host, path, query)
        location = f"{other().origin}/v1/tickets"
        if "api_key" in query:
            location += f"?api_key={query['api_key'][0]}"  # a redirect keeping the query
        return 301, {"Location": location}, b""

    return route


def other_route(host: Host, path: str, query: dict[str, list[str]]):
    return json_page([{"id": 2}])


def child_resources(other: Host) -> list[dict[str, Any]]:
    """Tickets on the API, and comments whose path is a full URL on the other host."""
    return [
        {
            "name": "tickets",
            "endpoint": {
                "path": "/v1/tickets",
                "data_selector": "data",
                "paginator": "single_page",
            },
        },
        {
            "name": "comments",
            "endpoint": {
                "path": other.origin + "/v1/tickets/{resources.tickets.id}/comments",
                "data_selector": "data",
                "paginator": "single_page",
            },
        },
    ]


def list_api(host: Host, path: str, query: dict[str, list[str]]):
    if path == "/oauth/token":
        return token_route(host, path, query)
    return json_page([{"id": 1}])


def build(way: str, kind: str, hosts, allow_other: bool = False):
    """The API, the other host, and a source that reaches the other one the `way` given."""
    other = hosts("127.0.0.2", other_route)
    route = {"next_link": next_link_api, "redirect": redirect_api}.get(way)
    api = hosts("127.0.0.1", route(lambda: other) if route else list_api)
    if way == "child_url":
        resources = child_resources(other)
    else:
        resources = [link_resource()]
        if way == "redirect":
            resources[0]["endpoint"]["paginator"] = "single_page"
    client = {"allowed_hosts": [other.netloc]} if allow_other else {}
    token_url = f"{api.origin}/oauth/token"
    source = support_api_from_config(config(api.origin, kind, resources, token_url, **client))
    return api, other, source


@pytest.mark.usefixtures("insecure_loopback_oauth")
@pytest.mark.parametrize("way", ["next_link", "child_url", "redirect"])
@pytest.mark.parametrize("kind", KINDS)
def test_another_host_is_refused_and_receives_nothing(kind, way, tmp_path, hosts):
    api, other, source = build(way, kind, hosts)

    with pytest.raises(PipelineStepFailed) as raised:
        make_pipeline(tmp_path).extract(source)  # extracting is enough to see what was sent

    failure = raised.value
    error = find_cause(failure, UntrustedHostError)
    assert error is not None, chain_text(failure)
    message = str(error)
    resource = "comments" if way == "child_url" else "tickets"
    assert f"Resource `{resource}`" in message
    assert other.netloc in message
    assert "allowed_hosts" in message
    assert other.seen == [], "the other host must not have been contacted"
    assert api.seen, "the API itself was asked"


@pytest.mark.usefixtures("insecure_loopback_oauth")
@pytest.mark.parametrize("way", ["next_link", "child_url", "redirect"])
@pytest.mark.parametrize("kind", KINDS)
def test_an_allowed_host_is_followed_with_the_credentials(kind, way, tmp_path, hosts):
    _, other, source = build(way, kind, hosts, allow_other=True)

    pipeline = run(tmp_path, source)

    assert other.seen, "the allowed host was asked"
    expected = {
        "api_key_query": API_KEY,
        "api_key_header": API_KEY,
        "bearer": BEARER,
        "http_basic": _basic(),
        "oauth2": ACCESS_TOKEN,
    }[kind]
    assert expected in credentials_seen(other)
    table = "comments" if way == "child_url" else "tickets"
    assert table_ids(pipeline, table) == ([1, 2] if way == "next_link" else [2])


def test_a_host_alone_in_allowed_hosts_allows_every_port() -> None:
    policy = OriginPolicy.from_config(
        "https://api.example.com",
        ["files.example.com", "cdn.example.com:8443"],
        allow_insecure_http=None,
        guarded=True,
    )
    assert policy.refusal("https://api.example.com/v1/x?page=2") is None
    assert policy.refusal("https://files.example.com:9000/x") is None
    assert policy.refusal("https://cdn.example.com:8443/x") is None
    assert policy.refusal("https://cdn.example.com/x") is not None
    assert policy.refusal("https://api.example.com:8443/x") is not None
    assert policy.refusal("https://evil.example.org/x") is not None
    # credentials never go over plain http beyond loopback, even to allowed hosts
    assert policy.refusal("http://files.example.com/x") is not None


def test_http_to_https_on_the_api_host_is_the_same_api() -> None:
    policy = OriginPolicy.from_config(
        "http://127.0.0.1:8080", None, allow_insecure_http=None, guarded=True
    )
    assert policy.refusal("http://127.0.0.1:8080/v1") is None
    assert policy.refusal("https://127.0.0.1/v1") is None
    assert policy.keeps_credentials("http://127.0.0.1:8080/v1", "https://127.0.0.1/v1")
    assert not policy.keeps_credentials("http://127.0.0.1:8080/v1", "http://127.0.0.2:8080/v1")
    assert Origin.of("HTTPS://API.example.com/x") == Origin("https", "api.example.com", 443)


def test_without_credentials_every_host_is_followed() -> None:
    policy = OriginPolicy.from_config(
        "https://api.example.com", None, allow_insecure_http=None, guarded=False
    )
    assert policy.refusal("https://other.example.org/x") is None


@pytest.mark.parametrize(
    ("hosts_value", "key"),
    [
        ("files.example.com", "client.allowed_hosts"),
        (["https://files.example.com"], "client.allowed_hosts[0]"),
        (["files.example.com/v1"], "client.allowed_hosts[0]"),
        ([443], "client.allowed_hosts[0]"),
    ],
)
def test_a_malformed_allowed_host_names_its_key(hosts_value, key) -> None:
    with pytest.raises(ConfigError) as raised:
        support_api_from_config(
            config(
                "https://api.example.com", "bearer", [link_resource()], allowed_hosts=hosts_value
            )
        )
    assert raised.value.key_path == key


# --- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["api_key_query", "bearer"])
def test_a_redirect_on_the_api_host_is_followed_as_plain_dlt_does(kind, tmp_path, hosts):
    def route(host: Host, path: str, query: dict[str, list[str]]):
        if not path.endswith("/"):
            qs = "&".join(f"{k}={v[0]}" for k, v in query.items())
            return 301, {"Location": f"{path}/" + (f"?{qs}" if qs else "")}, b""
        return json_page([{"id": 1}, {"id": 2}])

    api = hosts("127.0.0.1", route)
    resource = link_resource()
    resource["endpoint"]["paginator"] = "single_page"
    pipeline = run(tmp_path, support_api_from_config(config(api.origin, kind, [resource])))

    assert table_ids(pipeline, "tickets") == [1, 2]
    assert [r.path for r in api.seen] == ["/v1/tickets", "/v1/tickets/"]
    assert credentials_seen(api) == [secrets_of(kind)[0]] * 2


def test_a_redirect_loop_is_named(tmp_path, hosts):
    api = hosts("127.0.0.1", lambda _host, path, _query: (302, {"Location": path}, b""))
    resource = link_resource()
    resource["endpoint"]["paginator"] = "single_page"

    failure = run_failing(
        tmp_path, support_api_from_config(config(api.origin, "bearer", [resource]))
    )

    error = find_cause(failure, RedirectLoopError)
    assert error is not None, chain_text(failure)
    assert "Resource `tickets`" in str(error)
    assert "redirect loop" in str(error)
    assert BEARER not in chain_text(failure)


# --- plain http -------------------------------------------------------------------------------


def test_plain_http_with_credentials_is_refused_when_the_source_is_created() -> None:
    with pytest.raises(ConfigError) as raised:
        support_api_from_config(
            config("http://api.example.com", "api_key_query", [link_resource()])
        )
    assert raised.value.key_path == "client.base_url"
    assert "allow_insecure_http" in str(raised.value)
    assert API_KEY not in str(raised.value)


def test_catalogue_refuses_plain_http_and_names_its_own_key() -> None:
    with pytest.raises(ConfigError) as raised:
        support_api(base_url="http://api.example.com", credentials=BearerTokenAuth(BEARER))
    assert raised.value.key_path == "base_url"


def test_allow_insecure_http_allows_it_with_one_warning(caplog) -> None:
    url = f"http://api-{time.monotonic_ns()}.example.com"
    with caplog.at_level(logging.WARNING, logger="sources.support_api.origins"):
        for _ in range(2):
            support_api_from_config(
                config(url, "bearer", [link_resource()], allow_insecure_http=True)
            )
    warnings = [r for r in caplog.records if "allow_insecure_http" in r.getMessage()]
    assert len(warnings) == 1


def test_plain_http_without_credentials_is_accepted() -> None:
    cfg = config("http://api.example.com", "bearer", [link_resource()])
    del cfg["client"]["auth"]
    support_api_from_config(cfg)


# --- no secret in a failed run ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _silent_server() -> tuple[socket.socket, int]:
    """A server that accepts connections and never answers (a read timeout)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, int(sock.getsockname()[1])


FAILURES = (
    "connection_refused",
    "dns_failure",
    "read_timeout",
    "tls_error",
    "http_500",
    "http_401",
)


@pytest.mark.usefixtures("insecure_loopback_oauth")
@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_run_keeps_no_secret_anywhere(kind, failure, tmp_path, hosts, monkeypatch):
    tokens = hosts("127.0.0.1", token_route)
    token_url = f"{tokens.origin}/oauth/token"
    silent = None
    if failure == "connection_refused":
        base_url = f"http://127.0.0.1:{_closed_port()}"
    elif failure == "dns_failure":
        base_url = "https://support-api.invalid"
        real = socket.getaddrinfo

        def no_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "support-api.invalid":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    elif failure == "read_timeout":
        silent, port = _silent_server()
        base_url = f"http://127.0.0.1:{port}"
    elif failure == "tls_error":
        base_url = f"https://127.0.0.1:{hosts('127.0.0.1', list_api).server.server_address[1]}"
    else:
        status = 500 if failure == "http_500" else 401
        api = hosts(
            "127.0.0.1",
            lambda _host, _path, _query: (status, {}, json.dumps({"error": "down"}).encode()),
        )
        base_url = api.origin
    cfg = config(base_url, kind, [link_resource()], token_url)
    cfg["resource_defaults"]["endpoint"]["error_handler"] = {"max_retries": 0, "timeout": 0.3}
    try:
        error = run_failing(tmp_path, support_api_from_config(cfg))
    finally:
        if silent is not None:
            silent.close()

    secrets = secrets_of(kind)
    text = chain_text(error)
    for current in exception_chain(error):
        text += "\n" + repr(current.args)
        for name in ("request", "response"):
            holder = getattr(current, name, None)
            request = getattr(holder, "request", holder) if name == "response" else holder
            if request is not None:
                text += f"\n{request.url}\n{dict(request.headers)}"
            if name == "response" and holder is not None:
                text += f"\n{holder.url}"
        text += f"\n{getattr(current, 'url', '')}"
    for secret in secrets:
        assert secret not in text, f"{kind} secret in the exception chain after {failure}"
    stored = b"".join(
        path.read_bytes() for path in (tmp_path / "pipelines").rglob("*") if path.is_file()
    )
    assert stored, "dlt wrote the pipeline's trace and state"
    for secret in secrets:
        assert secret.encode() not in stored, (
            f"{kind} secret in the pipelines folder after {failure}"
        )
