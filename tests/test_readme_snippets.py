"""Every TOML and Python snippet in the READMEs works, and every setting is documented.

TOML blocks are parsed, and what they put under `[sources.support_api]` is handed to the
source (arguments, endpoint overrides, credential kinds) so a stale key fails here. Python
blocks run in a subprocess, as a user would paste them, against a sandbox: the placeholder
`https://api.example.com` becomes the sandbox URL, secrets come from env vars and `sources/` is
on the import path (the snippets import `support_api` the way a `dlt init` project does).

A block runs against the `desk` sandbox unless the line before its fence says otherwise, e.g.
`<!-- snippet-sandbox: nested_cursor -->` (see `SANDBOX_ROUTES`).
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dlt.common.configuration.resolve import resolve_configuration
from dlt.common.configuration.specs.base_configuration import is_hint_not_resolvable
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from sources.support_api import SupportAPICredentials, support_api
from tests.sandbox import TABLES, Route, SandboxServer

ROOT = Path(__file__).resolve().parents[1]
SOURCE_README = ROOT / "sources" / "support_api" / "README.md"
READMES = (ROOT / "README.md", SOURCE_README)
PLACEHOLDER_URL = "https://api.example.com"
ENV_PREFIX = "SOURCES__SUPPORT_API__"

FENCE = re.compile(
    r"^```(?P<lang>[a-z]+)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE
)
SANDBOX_MARKER = re.compile(r"<!--\s*snippet-sandbox:\s*(?P<name>\w+)")

SANDBOX_ROUTES: dict[str, list[Route]] = {
    "desk": [Route(f"/v1/{table}", table, "cursor") for table in TABLES],
    "nested_cursor": [
        Route(f"/v1/{table}", table, "nested_cursor" if table == "tickets" else "cursor")
        for table in TABLES
    ],
}
"""Route sets a Python snippet can ask for: the catalogue's defaults, or tickets paged by a
`paging.next.after` cursor."""


@dataclass(frozen=True)
class Snippet:
    """One fenced code block of a README."""

    readme: Path
    line: int
    lang: str
    code: str
    sandbox: str

    @property
    def id(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}"


def readme_snippets(lang: str) -> list[Snippet]:
    """The `lang` blocks of every README, in order."""
    found = []
    for readme in READMES:
        text = readme.read_text()
        for match in FENCE.finditer(text):
            if match["lang"] != lang:
                continue
            line = text.count("\n", 0, match.start()) + 1
            previous = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = SANDBOX_MARKER.search(previous)
            sandbox = marker["name"] if marker else "desk"
            found.append(Snippet(readme, line, lang, match["body"], sandbox))
    return found


def params(lang: str) -> list[Any]:
    return [pytest.param(snippet, id=snippet.id) for snippet in readme_snippets(lang)]


CREDENTIAL_KINDS = typing.get_args(SupportAPICredentials)


def credential_keys(kind: type) -> set[str]:
    """Keys a credential kind reads from config (runtime-only fields left out)."""
    fields = kind.get_resolvable_fields()  # type: ignore[attr-defined]
    return {name for name, hint in fields.items() if not is_hint_not_resolvable(hint)}


def resolve_credentials(values: dict[str, Any]) -> object:
    """The kind dlt resolves from `values`, trying the kinds in the source's order."""
    for kind in CREDENTIAL_KINDS:
        try:
            return resolve_configuration(kind(), explicit_value=dict(values))
        except Exception:  # noqa: BLE001, S112 - a kind with missing keys: try the next one
            continue
    pytest.fail(f"no credential kind resolves from keys {sorted(values)}")


def source_arguments() -> list[str]:
    return [name for name in inspect.signature(support_api).parameters if name != "credentials"]


def test_the_readmes_have_snippets():
    assert len(readme_snippets("toml")) >= 6
    assert len(readme_snippets("python")) >= 2
    assert all(s.sandbox in SANDBOX_ROUTES for s in readme_snippets("python"))


@pytest.mark.parametrize(
    "snippet",
    [
        *params("toml"),
        pytest.param(
            Snippet(ROOT / ".dlt/config.toml", 1, "toml", "", "desk"), id=".dlt/config.toml"
        ),
    ],
)
def test_toml_snippet_parses_and_the_source_accepts_it(snippet):
    text = snippet.code or snippet.readme.read_text()
    settings = tomllib.loads(text).get("sources", {}).get("support_api")
    if settings is None:
        return
    settings = dict(settings)
    credentials = settings.pop("credentials", None)
    if credentials:
        resolved = resolve_credentials(credentials)
        assert set(credentials) <= credential_keys(type(resolved)), type(resolved).__name__
    unknown = set(settings) - set(source_arguments())
    assert not unknown, f"not arguments of support_api: {unknown}"
    settings.setdefault("base_url", PLACEHOLDER_URL)
    source = support_api(credentials=BearerTokenAuth(token="placeholder"), **settings)
    assert source.resources


def test_every_source_argument_is_in_the_configuration_table():
    text = SOURCE_README.read_text()
    for name in source_arguments():
        row = f"| `{name}` | `{ENV_PREFIX}{name.upper()}`"
        assert row in text, f"config table lacks `{name}` with its env var"


def test_every_credential_key_is_in_the_credentials_table():
    text = SOURCE_README.read_text()
    keys = set().union(*(credential_keys(kind) for kind in CREDENTIAL_KINDS))
    for key in sorted(keys):
        row = f"| `{key}` | `{ENV_PREFIX}CREDENTIALS__{key.upper()}`"
        assert row in text, f"credentials table lacks `{key}` with its env var"


@pytest.mark.slow
@pytest.mark.parametrize("snippet", params("python"))
def test_python_snippet_runs_against_the_sandbox(snippet, sandbox_factory, tmp_path):
    server: SandboxServer = sandbox_factory(
        seed=17, size=40, routes=SANDBOX_ROUTES[snippet.sandbox], auth="oauth2"
    )
    secrets = server.secrets
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code.replace(PLACEHOLDER_URL, server.url))
    credentials = {
        "CLIENT_ID": secrets.client_id,
        "CLIENT_SECRET": secrets.client_secret,
        "TOKEN_URL": f"{server.url}/oauth/token",
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)},
        "PYTHONPATH": str(ROOT / "sources"),
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # the sandbox's token endpoint is plain http
        "SUPPORT_API_PROGRESS": "none",
        f"{ENV_PREFIX}BASE_URL": server.url,
        **{f"{ENV_PREFIX}CREDENTIALS__{key}": value for key, value in credentials.items()},
        # top-level secrets, for snippets that read `dlt.secrets["client_id"]`
        "CLIENT_ID": secrets.client_id,
        "CLIENT_SECRET": secrets.client_secret,
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter on a snippet of our README
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"snippet at {snippet.id} failed:\n{output}"
    assert any(r.path.startswith("/v1/") for r in server.requests()), (
        f"snippet at {snippet.id} sent no request to the API"
    )
    assert secrets.client_secret not in output
