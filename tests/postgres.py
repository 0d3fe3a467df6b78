"""A throwaway PostgreSQL server on 127.0.0.1 for the tests, from Debian's `postgresql` package.

`PostgresServer.start()` runs `initdb` into a fresh folder (trust auth, loopback only, no
durability: the data is thrown away), starts the server on a free port with `pg_ctl` and
returns once it accepts connections; `stop()` stops it and deletes the folder. As root, the
server runs as the `postgres` user, which owns the folder (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
"""Superuser created by `initdb`, and the OS user the server runs as when we are root."""

UNCHECKED_PASSWORD = "trusted"
"""Password put into connection strings; trust auth ignores it."""

SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
}
"""Server settings: TCP on loopback only, and no waiting for disks that are thrown away."""


class PostgresNotAvailableError(RuntimeError):
    """The PostgreSQL server binaries (`initdb`, `pg_ctl`) are not installed."""


def find_bin_dir() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: Debian's newest `/usr/lib/postgresql/<ver>/bin`.

    Returns:
        The folder, or None when PostgreSQL's server binaries are not installed.
    """
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running server.

    Attributes:
        bin_dir: Folder of the server binaries.
        root: Folder holding the data directory and the server log; deleted by `stop`.
        port: TCP port on 127.0.0.1.
    """

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def credentials(self) -> str:
        """Connection string of the `postgres` database.

        The server trusts loopback connections and checks no password, but dlt's postgres
        credentials require one: any value does.
        """
        return f"postgresql://{SERVER_USER}:{UNCHECKED_PASSWORD}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls, attempts: int = 3) -> PostgresServer:
        """Creates a cluster in a new temporary folder and starts it on a free port.

        Args:
            attempts: Ports to try: another process may take the free port first.

        Returns:
            The running server.

        Raises:
            PostgresNotAvailableError: If the binaries are not installed.
            RuntimeError: If the server does not start; the message holds its log.
        """
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresNotAvailableError(
                "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
            )
        # in /tmp rather than pytest's tmp_path: the postgres user must reach the folder
        root = Path(tempfile.mkdtemp(prefix="support_api_pg_"))
        server = cls(bin_dir, root, 0)
        try:
            server._boot(attempts)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def _boot(self, attempts: int) -> None:
        self._chown_to_server_user(self.root)
        self._run(
            "initdb",
            *("-D", str(self.data_dir), "-U", SERVER_USER, "-A", "trust"),
            *("-E", "UTF8", "--no-locale", "--no-sync"),
        )
        for _ in range(attempts):
            self.port = free_port()
            if self._pg_ctl_start():
                return
        log = self.log_file.read_text() if self.log_file.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{log}")

    def stop(self) -> None:
        """Stops the server at once (its data is thrown away) and deletes its folder."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl_start(self) -> bool:
        options = " ".join(f"-c {key}={value!r}" for key, value in SETTINGS.items())
        started = self._run(
            "pg_ctl",
            *("-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "30"),
            *("-o", f"-p {self.port} {options}", "start"),
            check=False,
        )
        return started.returncode == 0

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(  # noqa: S603 - PostgreSQL's own binaries, no shell
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
        return result

    @staticmethod
    def _chown_to_server_user(path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)
