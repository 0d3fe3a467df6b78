"""Plumbing of the cassette tests: redaction, the fixed replay port, the sandbox stand-in.

Recording and replay
    A test marked `vcr` runs against a real sandbox only while its cassette is being recorded
    (`nox -s record`, i.e. `--record-mode=rewrite`). On replay (the default record mode `none`)
    no server runs: `SandboxAPI` then stands in for it with the fixed `REPLAY_URL`, the
    credentials of `sandbox_secrets(seed)` (any value would do: headers and bodies are not
    matched) and the dataset generated in-process from the same seed, which is what the
    assertions compare against.

Matching, and why the port is not part of it
    The sandbox listens on an ephemeral port while recording. `CassetteRedactor` rewrites every
    loopback `http://127.0.0.1:<port>` to `REPLAY_URL` (port 8765) in request URIs, in response
    headers (`Link`) and in response bodies (`next` links), so cassettes hold no ephemeral
    port and a replayed walk follows links to the same fixed port the test starts from. vcrpy
    also runs `before_record_request` on every replayed request before matching, so matching is
    port-blind whatever port a request names; `MATCH_ON` leaves the port out on top of that.
    Requests match on method, scheme, host, path and query (vcrpy compares the query
    parameters sorted); headers and bodies are never matched, so secrets need not replay.

Secrets
    `CassetteRedactor` replaces every credential with a deterministic placeholder
    (`REDACTED-<kind>-<n>`, numbered in order of first appearance within one cassette): the
    `Authorization` and API-key headers, the `api_key` query parameter, `client_id`,
    `client_secret` and `refresh_token` in token request forms, and `access_token` /
    `refresh_token` in token responses. One value always maps to one placeholder, so a cassette
    stays self-consistent: the access token a response issued is the one the next request's
    `Authorization` header shows, and a rotated refresh token is the one the next refresh
    sends. `find_leaks` is the scanner `test_cassette_secrets.py` runs over every cassette.

Determinism
    `Date` response headers are dropped and request headers are reduced to the few that say
    something about the exchange (no `User-Agent` with library versions), so re-recording
    gives identical files.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from vcr.record_mode import RecordMode

from tests.sandbox import (
    SECRET_PREFIXES,
    Dataset,
    Fault,
    SandboxSecrets,
    SandboxServer,
    generate_dataset,
    sandbox_secrets,
)
from tests.sandbox.fixtures import SandboxFactory

REPLAY_HOST: Final = "127.0.0.1"
REPLAY_PORT: Final = 8765
REPLAY_URL: Final = f"http://{REPLAY_HOST}:{REPLAY_PORT}"
"""Base URL the cassettes name, and the one replayed tests send requests to."""

CASSETTES_DIR: Final = Path(__file__).resolve().parent / "cassettes"

CASSETTE_SEEDS: Final = frozenset({2, 3, 5, 11, 31})
"""Every sandbox seed a cassette test may use; the secret scan checks all of their secrets."""

MATCH_ON: Final = ("method", "scheme", "host", "path", "query")
"""vcrpy matchers: the port is deliberately absent (see the module docs)."""

PLACEHOLDER_PREFIX: Final = "REDACTED-"

_LOOPBACK_ORIGIN = re.compile(r"http://(?:127\.0\.0\.1|localhost|\[::1\]):\d+")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_KEPT_REQUEST_HEADERS = frozenset({"accept", "content-type", "authorization", "x-api-key"})
_DROPPED_RESPONSE_HEADERS = frozenset({"date"})
_SECRET_QUERY_PARAMS: Final[Mapping[str, str]] = {
    "api_key": "api-key",
    "apikey": "api-key",
    "key": "api-key",
    "token": "access",
    "access_token": "access",
    "refresh_token": "refresh",
    "client_secret": "client-secret",
    "client_id": "client-id",
}
"""Secret query parameters and form fields, with the placeholder kind of each."""
_SECRET_TOKEN_FIELDS: Final[Mapping[str, str]] = {
    "access_token": "access",
    "refresh_token": "refresh",
    "id_token": "id",
}
"""Token response fields that hold secrets, with the placeholder kind of each."""
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


# --- redaction --------------------------------------------------------------------------------


class CassetteRedactor:
    """`before_record_request` / `before_record_response` hooks for one cassette.

    vcrpy hands the hooks copies, so the live exchange (what the client receives while
    recording) is untouched: only what is stored, and what replayed requests are matched as,
    is rewritten. One instance serves one cassette, so placeholder numbers start at 1 in each.
    """

    def __init__(self) -> None:
        """Starts with no value seen."""
        self._placeholders: dict[str, str] = {}
        self._issued: Counter[str] = Counter()
        self._lock = threading.Lock()  # resources may extract in parallel threads

    def __deepcopy__(self, memo: dict[int, Any]) -> CassetteRedactor:
        """Copies the numbering (pytest-recording deep-copies `vcr_config`, hooks included)."""
        clone = type(self)()
        clone._placeholders = dict(self._placeholders)
        clone._issued = Counter(self._issued)
        return clone

    def placeholder(self, value: str, kind: str) -> str:
        """Returns the placeholder of a secret value, numbering new values per kind.

        Args:
            value: The secret (a placeholder is returned unchanged: replayed clients send them).
            kind: What the secret is, e.g. `access`, `refresh`, `api-key`.

        Returns:
            `REDACTED-<kind>-<n>`, the same for every occurrence of `value`.
        """
        if value.startswith(PLACEHOLDER_PREFIX):
            return value
        with self._lock:
            known = self._placeholders.get(value)
            if known is None:
                self._issued[kind] += 1
                known = f"{PLACEHOLDER_PREFIX}{kind}-{self._issued[kind]}"
                self._placeholders[value] = known
        return known

    # -- requests --------------------------------------------------------------------------------

    def before_record_request(self, request: Any) -> Any:
        """Fixes the port, redacts the query, the auth headers and a form body.

        Args:
            request: vcrpy's copy of the request.

        Returns:
            The same request, rewritten.
        """
        request.uri = self._redact_uri(request.uri)
        headers: dict[str, str] = {}
        content_type = ""
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered == "content-type":
                content_type = str(value)
            if lowered == "authorization":
                headers[name] = self._redact_authorization(str(value))
            elif lowered == "x-api-key":
                headers[name] = self.placeholder(str(value), "api-key")
            elif lowered in _KEPT_REQUEST_HEADERS:
                headers[name] = value
        request.headers = headers
        if request.body and content_type.startswith(_FORM_CONTENT_TYPE):
            request.body = self._redact_form(request.body)
        return request

    def _redact_uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        netloc = parts.netloc
        if parts.hostname in _LOOPBACK_HOSTS:
            netloc = f"{REPLAY_HOST}:{REPLAY_PORT}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in _SECRET_QUERY_PARAMS for name, _ in pairs):
            query = urlencode(self._redact_pairs(pairs))
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def _redact_pairs(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        redacted = []
        for name, value in pairs:
            kind = _SECRET_QUERY_PARAMS.get(name.lower())
            redacted.append((name, self.placeholder(value, kind) if kind and value else value))
        return redacted

    def _redact_form(self, body: bytes | str) -> bytes:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode(self._redact_pairs(pairs)).encode("utf-8")

    def _redact_authorization(self, value: str) -> str:
        scheme, _, credentials = value.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            # an access token a token response issued is already known as `access-<n>`
            return f"Bearer {self.placeholder(credentials, 'bearer')}"
        if scheme.lower() == "basic":
            return f"Basic {self.placeholder(credentials, 'basic-auth')}"
        return self.placeholder(value, "authorization")

    # -- responses -------------------------------------------------------------------------------

    def before_record_response(self, response: dict[str, Any]) -> dict[str, Any]:
        """Drops `Date`, fixes loopback URLs, redacts token fields, fixes `Content-Length`.

        Args:
            response: vcrpy's copy of the response (`status`, `headers`, `body`).

        Returns:
            The same response, rewritten.
        """
        body = response["body"].get("string")
        if isinstance(body, bytes):
            try:
                text: str | None = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        else:
            text = body
        if text is not None:
            new_text = self._redact_body(text)
            response["body"]["string"] = new_text.encode("utf-8")
        headers: dict[str, list[str]] = {}
        for name, values in response["headers"].items():
            lowered = name.lower()
            if lowered in _DROPPED_RESPONSE_HEADERS:
                continue
            if lowered == "content-length" and text is not None:
                # the body may have changed length: a stale length breaks urllib3 on replay
                headers[name] = [str(len(response["body"]["string"]))]
                continue
            headers[name] = [_LOOPBACK_ORIGIN.sub(REPLAY_URL, str(value)) for value in values]
        response["headers"] = headers
        return response

    def _redact_body(self, text: str) -> str:
        text = _LOOPBACK_ORIGIN.sub(REPLAY_URL, text)
        try:
            payload = json.loads(text)
        except ValueError:
            return text
        if not isinstance(payload, dict) or not set(payload) & set(_SECRET_TOKEN_FIELDS):
            return text
        for name, kind in _SECRET_TOKEN_FIELDS.items():
            value = payload.get(name)
            if isinstance(value, str) and value:
                payload[name] = self.placeholder(value, kind)
        return json.dumps(payload, separators=(",", ":"))


def cassette_options(redactor: CassetteRedactor | None = None) -> dict[str, Any]:
    """The `vcr_config` of every cassette test (and of the meta tests' hand-made cassettes).

    No `record_mode` here: it would override `--record-mode` on the command line.

    Args:
        redactor: The hooks' state; a new one per cassette when None.

    Returns:
        Keyword arguments of `VCR.use_cassette`.
    """
    redactor = redactor or CassetteRedactor()
    return {
        "match_on": MATCH_ON,
        "before_record_request": redactor.before_record_request,
        "before_record_response": redactor.before_record_response,
        "allow_playback_repeats": False,
        "decode_compressed_response": True,
    }


def is_recording(cassette: Any) -> bool:
    """Tells whether a cassette records real exchanges (rather than replaying stored ones).

    `rewrite` (pytest-recording deletes the file, then records as `new_episodes`) and `all`
    record; `none`, and `once` with an existing file, replay.

    Args:
        cassette: The vcrpy cassette of the test.

    Returns:
        True while recording.
    """
    if cassette.record_mode == RecordMode.ALL:
        return True
    return not cassette.write_protected and not cassette.rewound


# --- the sandbox, or its stand-in -------------------------------------------------------------


@dataclass
class SandboxAPI:
    """The running sandbox while recording; its stand-in (no server) while replaying.

    Attributes:
        url: Base URL to give the source: the sandbox's, or `REPLAY_URL`.
        secrets: Credentials to configure the client with.
        dataset: The data served; on replay generated in-process from the same seed and size.
        server: The sandbox, only while recording.
    """

    url: str
    secrets: SandboxSecrets
    dataset: Dataset
    server: SandboxServer | None = None

    @property
    def recording(self) -> bool:
        """Whether a real sandbox answers (the cassette is being recorded)."""
        return self.server is not None

    def url_for(self, path: str) -> str:
        """The absolute URL of a path, e.g. the token endpoint."""
        return f"{self.url}/{path.lstrip('/')}"

    def inject(self, path: str, faults: Iterable[Fault]) -> None:
        """Queues faults on the sandbox; on replay the cassette already holds them."""
        if self.server is not None:
            self.server.inject(path, list(faults))

    def expire_access_tokens(self) -> None:
        """Expires issued access tokens server side; on replay the cassette holds the 401."""
        if self.server is not None:
            self.server.expire_access_tokens()

    def current_refresh_token(self) -> str | None:
        """The refresh token the sandbox accepts now (recording only)."""
        if self.server is None:
            raise RuntimeError("no sandbox runs on replay: read the cassette instead")
        return self.server.current_refresh_token


def start_sandbox_api(
    recording: bool,
    start: SandboxFactory,
    *,
    seed: int,
    size: int,
    table_sizes: Mapping[str, int] | None = None,
    **server_options: Any,
) -> SandboxAPI:
    """Starts the sandbox when recording, else builds the replay stand-in.

    Args:
        recording: Whether the test's cassette is being recorded.
        start: The `sandbox_factory` fixture.
        seed: Sandbox seed; must be in `CASSETTE_SEEDS` so the secret scan knows its secrets.
        size: Dataset size.
        table_sizes: Per-table size overrides.
        server_options: Other `SandboxServer` arguments (`shape`, `auth`, `clock`, ...);
            unused on replay.

    Returns:
        The API to point the source at.

    Raises:
        ValueError: If the seed is not in `CASSETTE_SEEDS`.
    """
    if seed not in CASSETTE_SEEDS:
        raise ValueError(f"add seed {seed} to CASSETTE_SEEDS so the secret scan covers it")
    if recording:
        server = start(seed=seed, size=size, table_sizes=table_sizes, **server_options)
        return SandboxAPI(server.url, server.secrets, server.dataset, server)
    return SandboxAPI(REPLAY_URL, sandbox_secrets(seed), generate_dataset(seed, size, table_sizes))


# --- reading a cassette -----------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One stored request and its response, as the cassette holds them (redacted).

    Attributes:
        method: HTTP method.
        path: URL path.
        query: Query parameters (last value wins).
        status: Response status.
        form: Form fields of the request body (token requests), else empty.
        headers: Request headers.
        response_headers: Response headers (first value of each).
        body: Parsed JSON response, or None.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    form: dict[str, str]
    headers: dict[str, str]
    response_headers: dict[str, str]
    body: Any


def exchanges(cassette: Any, path: str | None = None) -> list[Exchange]:
    """The cassette's interactions in recorded order (every one, played or not).

    While recording these are the exchanges made so far; on replay, the whole cassette (the
    autouse check then makes sure every one of them was played).

    Args:
        cassette: A vcrpy cassette.
        path: Only exchanges with this URL path.

    Returns:
        The exchanges.
    """
    found = []
    for request, response in cassette.data:
        parts = urlsplit(request.uri)
        if path is not None and parts.path != path:
            continue
        body = request.body
        text = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
        content_type = str(request.headers.get("Content-Type", ""))
        form = dict(parse_qsl(text)) if content_type.startswith(_FORM_CONTENT_TYPE) else {}
        raw = response["body"]["string"]
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        found.append(
            Exchange(
                method=request.method,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                status=int(response["status"]["code"]),
                form=form,
                headers={str(k): str(v) for k, v in request.headers.items()},
                response_headers={str(k): str(v[0]) for k, v in response["headers"].items()},
                body=payload,
            )
        )
    return found


# --- playback checks --------------------------------------------------------------------------


class PlaybackGuard:
    """Notes every request a replayed cassette could not answer, and checks full playback.

    vcrpy raises `CannotOverwriteExistingCassetteException` for a request missing from a
    cassette in record mode `none`. Code under test could swallow that error (a broad
    `except`, a retry loop, `pytest.raises(Exception)`), so the guard also remembers the
    request by wrapping the cassette's `can_play_response_for`, and `problems` reports it.
    """

    def __init__(self, cassette: Any) -> None:
        """Wraps the cassette's lookup.

        Args:
            cassette: The replaying vcrpy cassette.
        """
        self.cassette = cassette
        self.unmatched: list[str] = []
        lookup = cassette.can_play_response_for

        def can_play_response_for(request: Any) -> Any:
            playable = lookup(request)
            if not playable and cassette.write_protected:
                described = f"{request.method} {request.uri}"
                if described not in self.unmatched:
                    self.unmatched.append(described)
            return playable

        cassette.can_play_response_for = can_play_response_for

    def problems(self) -> list[str]:
        """Requests the cassette lacked, and recorded interactions never played.

        Returns:
            One line per problem; empty when the replay matched the cassette exactly.
        """
        found = [f"request not in the cassette: {line}" for line in self.unmatched]
        if not self.cassette.all_played:
            for index, (request, _) in enumerate(self.cassette.data):
                if self.cassette.play_counts[index] == 0:
                    found.append(f"recorded but never played: {request.method} {request.uri}")
        return found

    def assert_fully_played(self) -> None:
        """Fails when `problems` finds any.

        Raises:
            AssertionError: Naming the cassette and every problem.
        """
        problems = self.problems()
        if problems:
            listing = "\n  ".join(problems)
            raise AssertionError(
                f"replay of {self.cassette.path} does not match the cassette:\n  {listing}\n"
                "Re-record with `nox -s record` if the code's requests changed on purpose."
            )


# --- leak scanning ----------------------------------------------------------------------------


def sandbox_secret_values(seeds: Iterable[int] = CASSETTE_SEEDS) -> set[str]:
    """Every credential value the sandboxes of `seeds` accept (client id included)."""
    values: set[str] = set()
    for seed in seeds:
        values.update(str(value) for value in dataclasses.astuple(sandbox_secrets(seed)))
    return values


_NOT_PLACEHOLDER = rf"(?!{PLACEHOLDER_PREFIX})"
LEAK_PATTERNS: Final[Mapping[str, re.Pattern[str]]] = {
    "a sandbox credential prefix (sbxsecret-, sbxkey-, sbxaccess-, ...)": re.compile(
        "|".join(re.escape(prefix.rstrip("-")) for prefix in SECRET_PREFIXES)
    ),
    "a JSON token field that is not a placeholder": re.compile(
        r"""(?:access_token|refresh_token|id_token|client_secret)\\?["']?\s*:\s*\\?["']"""
        + _NOT_PLACEHOLDER
    ),
    "a secret query parameter or form field that is not a placeholder": re.compile(
        r"(?<![A-Za-z0-9_])(?:api_?key|key|token|access_token|refresh_token|client_secret"
        r"|client_id)=" + _NOT_PLACEHOLDER + r"[^&\s'\"]"
    ),
    "Bearer or Basic credentials that are not a placeholder": re.compile(
        r"(?i)\b(?:bearer|basic)\s+" + _NOT_PLACEHOLDER + r"[A-Za-z0-9\-._~+/]{8,}=*"
    ),
    "an Authorization or API-key header that is not a placeholder": re.compile(
        r"(?im)^\s*(?:x-api-key|authorization):[ \t]*\n\s*-\s*"
        r"(?:(?:bearer|basic)\s+"
        + _NOT_PLACEHOLDER
        + r"|(?!(?:bearer|basic)\s)"
        + _NOT_PLACEHOLDER
        + ")"
        r"\S"
    ),
}
"""What a leaked credential looks like in a cassette file, by description."""


def find_leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Finds credentials in a cassette's text.

    Args:
        text: The cassette file's content.
        secrets: Exact secret values that must not appear.

    Returns:
        A description of each leak, with its line; the leaked value itself is never quoted.
    """
    leaks = []
    for value in sorted(secrets):
        position = text.find(value)
        if position >= 0:
            line = text.count("\n", 0, position) + 1
            leaks.append(f"line {line}: a sandbox secret ({value[:9]}...)")
    for description, pattern in LEAK_PATTERNS.items():
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            leaks.append(f"line {line}: {description}")
    return leaks


def cassette_files(folder: Path = CASSETTES_DIR) -> list[Path]:
    """Every cassette under `folder`, sorted."""
    return sorted(folder.rglob("*.yaml")) if folder.is_dir() else []
