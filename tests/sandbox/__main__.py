"""Runs a sandbox server in the foreground: `python -m tests.sandbox --port 8765 --seed 1`.

When the server is ready, one JSON line `{"url", "shape", "auth", "pid"}` is printed to stdout
and flushed. The process serves until SIGTERM or SIGINT. Credentials are never printed:
callers derive them with `tests.sandbox.sandbox_secrets(seed)`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import cast

from tests.sandbox.server import AUTH_MODES, SHAPES, AuthMode, SandboxServer


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandbox",
        description="Serve the deterministic fake support desk API on 127.0.0.1.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 = any free port")
    parser.add_argument("--seed", type=int, default=1, help="dataset and credentials seed")
    parser.add_argument("--size", type=int, default=1000, help="number of tickets")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="desk", help="route preset")
    parser.add_argument("--auth", choices=AUTH_MODES, default="none", help="auth mode")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per request")
    parser.add_argument(
        "--rate-limit", type=int, default=None, help="requests per second (default unlimited)"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="probability of a random fault"
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults")
    parser.add_argument(
        "--access-token-ttl", type=float, default=3600, help="OAuth2 access token lifetime (s)"
    )
    parser.add_argument(
        "--no-rotate", action="store_true", help="keep the same OAuth2 refresh token on refresh"
    )
    parser.add_argument(
        "--mutate-endpoint",
        action="store_true",
        help="serve POST /_sandbox/mutate?updates=N&creates=M and GET /_sandbox/stats",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parses arguments, serves until SIGTERM or SIGINT, then stops cleanly.

    Args:
        argv: Arguments without the program name; None reads `sys.argv`.

    Returns:
        The process exit status.
    """
    args = build_parser().parse_args(argv)
    server = SandboxServer(
        seed=args.seed,
        size=args.size,
        shape=args.shape,
        auth=cast("AuthMode", args.auth),
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        rate_limit_per_second=args.rate_limit,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        access_token_ttl=args.access_token_ttl,
        rotate_refresh_tokens=not args.no_rotate,
        admin_routes=args.mutate_endpoint,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    try:
        ready = {"url": server.url, "shape": args.shape, "auth": args.auth, "pid": os.getpid()}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
