"""A tiny JSON API on a loopback address that records every request it receives.

For tests that assert on the wire (which host got which header) or hold requests on purpose
(how many are in flight at once), where the sandbox's fixed shapes do not fit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Seen:
    """One request a host received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str = ""


Route = Callable[["Host", str, dict[str, list[str]]], tuple[int, dict[str, str], bytes]]


@dataclass
class Host:
    """A tiny JSON API on one loopback address that records every request."""

    address: str
    route: Route
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://{self.address}:{self.server.server_address[1]}"

    @property
    def netloc(self) -> str:
        return self.origin.removeprefix("http://")

    def start(self) -> Host:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                parts = urlsplit(self.path)
                host.seen.append(
                    Seen("POST", parts.path, parse_qs(body), dict(self.headers.items()), body)
                )
                status, headers, payload = host.route(host, parts.path, parse_qs(body))
                self._send(status, headers, payload)

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                host.seen.append(Seen("GET", parts.path, query, dict(self.headers.items())))
                status, headers, payload = host.route(host, parts.path, query)
                self._send(status, headers, payload)

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.address, 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def values_seen(self) -> list[str]:
        """Every header and query value of every request this host received."""
        return [
            value
            for request in self.seen
            for value in [
                *request.headers.values(),
                *(v for vs in request.query.values() for v in vs),
            ]
        ]


@pytest.fixture
def loopback_hosts() -> Iterator[Callable[[str, Route], Host]]:
    """Starts fake APIs on loopback addresses (`hosts("127.0.0.2", route)`), stopped after."""
    started: list[Host] = []

    def start(address: str, route: Route) -> Host:
        host = Host(address, route).start()
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def json_page(rows: list[dict[str, Any]], **extra: Any) -> tuple[int, dict[str, str], bytes]:
    """A 200 answer holding `rows` under `data`, plus `extra` top-level keys."""
    return 200, {}, json.dumps({"data": rows, **extra}).encode()
