"""Where the newest OAuth2 refresh token is kept between runs.

Many providers issue single-use refresh tokens: every refresh returns a new one and revokes the
old. The refresh-token grant writes the new token to a `TokenStore` before it uses the new
access token, and prefers the stored token over the configured one on the next run. The default
store is a JSON file outside the project (`default_token_store_path`), written atomically with
mode 0600, that remembers a fingerprint of the configured refresh token it descends from.
Runs in other processes may share the file: `FileTokenStore.exclusive` holds a `flock` on a
lock file beside it for the whole exchange, so no run sends a token another run already used.
A custom store (a secrets manager) implements `TokenStore`, and `LockableTokenStore` to take
part in that lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import pendulum

from .errors import AuthenticationError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "FileTokenStore",
    "LockableTokenStore",
    "TokenStore",
    "default_token_store_path",
    "describe_store",
    "refresh_token_fingerprint",
]

logger = logging.getLogger(__name__)

_FINGERPRINT_LENGTH = 16


@runtime_checkable
class TokenStore(Protocol):
    """Keeps the newest refresh token between runs.

    Implement it to keep rotated refresh tokens in a secrets manager instead of a file. `save`
    must be durable when it returns: the token endpoint has already revoked the previous
    refresh token by then. dlt state is not a fit: it lives in the destination and is only
    written at the end of a successful load.

    A custom store is the source of truth: when you re-issue a refresh token, write it into
    the store (or clear the store) yourself. `FileTokenStore` does this automatically by
    remembering which configured token its contents descend from.
    """

    def load(self) -> str | None:
        """Returns the stored refresh token, or None when there is none."""
        ...

    def save(self, refresh_token: str) -> None:
        """Stores `refresh_token`, replacing the previous one.

        Args:
            refresh_token: The newest refresh token.
        """
        ...


@runtime_checkable
class LockableTokenStore(TokenStore, Protocol):
    """A `TokenStore` that runs in other processes can lock while they refresh.

    Runs that share a store (the backfill script's parallel windows, a scheduled run that
    overlaps the previous one, two pipelines with the same client) would otherwise refresh
    with the same single-use refresh token, and all but the first would fail with
    `invalid_grant`. While `exclusive()` is held the refresh-token grant reads the store
    again, exchanges the newest token and saves its successor.
    """

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Returns a context manager that holds the store's lock across processes."""
        ...


def refresh_token_fingerprint(refresh_token: str) -> str:
    """Returns a short SHA-256 fingerprint of a refresh token (safe to store and to log).

    Args:
        refresh_token: The token.

    Returns:
        The first 16 hex digits of its SHA-256.
    """
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()[:_FINGERPRINT_LENGTH]


def default_token_store_path(token_url: str, client_id: str) -> Path:
    """Returns where `FileTokenStore` keeps the refresh token of one client by default.

    The file is under the user's home, outside any project tree (so it is not committed or
    copied with the project), and outside `DLT_DATA_DIR`, which some runners make temporary.

    Args:
        token_url: The token endpoint.
        client_id: The OAuth2 client id.

    Returns:
        `~/.dlt/support_api/tokens/<first 16 hex digits of sha256(token_url + client_id)>.json`
    """
    digest = hashlib.sha256(f"{token_url}{client_id}".encode()).hexdigest()
    return Path.home() / ".dlt" / "support_api" / "tokens" / f"{digest[:_FINGERPRINT_LENGTH]}.json"


class FileTokenStore:
    """A `TokenStore` in a JSON file: mode 0600, replaced atomically on every save.

    The record also holds the fingerprint of the configured refresh token its token descends
    from (`origin`). When the store is created with a different configured refresh token (the
    user re-issued one), `load` ignores the stored token, so the configured one is used, and
    the next `save` overwrites the record: the store is reset.

    Attributes:
        path: The JSON file.
    """

    def __init__(
        self, path: str | os.PathLike[str], origin_refresh_token: str | None = None
    ) -> None:
        """Points the store at a file.

        Args:
            path: The JSON file; `~` is expanded. Parent folders are created on first save.
            origin_refresh_token: The configured refresh token. When given, a stored token that
                descends from a different configured token is ignored.
        """
        self.path = Path(path).expanduser()
        self._origin = (
            refresh_token_fingerprint(origin_refresh_token) if origin_refresh_token else None
        )

    def __repr__(self) -> str:
        """Names the file; the token is never shown."""
        return f"FileTokenStore({str(self.path)!r})"

    def __str__(self) -> str:
        """Names the file; the token is never shown."""
        return f"the token store file {self.path}"

    def load(self) -> str | None:
        """Reads the stored refresh token.

        Returns:
            The stored token, or None when there is no file or when the stored token descends
            from a different configured refresh token than this store's.

        Raises:
            AuthenticationError: When the file cannot be read or is not a token record.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuthenticationError(
                f"Cannot read the token store file {self.path} ({exc.strerror}). Fix its"
                " permissions, or set `token_store_path` to a readable location."
            ) from exc
        try:
            record = json.loads(text)
            token = record["refresh_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"The token store file {self.path} does not hold a refresh token record."
                " Delete it: the configured refresh token is then used and the file rewritten."
            )
        stored_origin = record.get("origin")
        if self._origin and stored_origin and stored_origin != self._origin:
            logger.warning(
                "The configured refresh token is not the one the token in %s descends from:"
                " using the configured token; the file is overwritten after its first refresh.",
                self.path,
            )
            return None
        self._warn_if_shared()
        return token

    def save(self, refresh_token: str) -> None:
        """Replaces the stored record atomically: temp file (0600), fsync, `os.replace`.

        Args:
            refresh_token: The newest refresh token.
        """
        record = {
            "refresh_token": refresh_token,
            "origin": self._origin,
            "fingerprint": refresh_token_fingerprint(refresh_token),
            "updated_at": pendulum.now("UTC").isoformat(),
        }
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600, in the target folder so replace is atomic
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=folder
        )
        temp_path = Path(temp_name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
                if hasattr(os, "fchmod"):  # not on Windows; mkstemp is private there anyway
                    os.fchmod(temp_file.fileno(), stat.S_IRUSR | stat.S_IWUSR)
                json.dump(record, temp_file)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            temp_path.replace(self.path)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        self._fsync_folder(folder)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Holds an exclusive lock on the store across processes while the block runs.

        The lock is `flock` on `<file>.lock` beside the store (mode 0600), released when the
        block ends or the process dies. On Windows, which has no `flock`, it locks nothing:
        there, runs sharing a store must not overlap.

        Yields:
            Nothing; the lock is held until the block ends.
        """
        if sys.platform == "win32":
            yield
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self.path.with_name(f"{self.path.name}.lock")
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, stat.S_IRUSR | stat.S_IWUSR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    @staticmethod
    def _fsync_folder(folder: Path) -> None:
        """Makes the rename durable; best effort (folders cannot be opened on Windows)."""
        with contextlib.suppress(OSError):
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def _warn_if_shared(self) -> None:
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                logger.warning(
                    "The token store file %s is readable by other users (mode %o); it is"
                    " rewritten with mode 600 on the next refresh.",
                    self.path,
                    mode,
                )


def describe_store(store: TokenStore) -> str:
    """Names a store in messages (its type and `str()`, which must not show the token)."""
    if isinstance(store, FileTokenStore):
        return str(store)
    return f"the token store {store} ({type(store).__name__})"
