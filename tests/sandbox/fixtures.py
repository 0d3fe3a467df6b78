"""Pytest fixtures that start sandbox servers on loopback.

Register them with `pytest_plugins = ["tests.sandbox.fixtures"]` in `tests/conftest.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sandbox.server import FakeClock, SandboxServer

SandboxFactory = Callable[..., SandboxServer]
"""Takes `SandboxServer` keyword arguments and returns a started server."""

__all__ = ["FakeClock", "SandboxFactory", "fake_clock", "sandbox", "sandbox_factory"]


@pytest.fixture
def sandbox_factory() -> Iterator[SandboxFactory]:
    """Starts sandbox servers on demand and stops all of them at teardown.

    Yields:
        A factory: call it with `SandboxServer` keyword arguments to get a started server.
    """
    servers: list[SandboxServer] = []

    def start(**kwargs: Any) -> SandboxServer:
        server = SandboxServer(**kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> SandboxServer:
    """A started default sandbox: seed 7, 300 tickets, shape `desk`, no auth.

    Returns:
        The running server.
    """
    return sandbox_factory(seed=7, size=300, shape="desk", auth="none")


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake epoch clock starting at 1,700,000,000 s; pass it as `clock=` to a server.

    Returns:
        The clock.
    """
    return FakeClock()
