"""No cassette holds a credential, and the cassettes exist.

Scans every file under `cassettes/` for the secrets of every sandbox seed the cassette tests
use (`CASSETTE_SEEDS`, enforced when a test starts its sandbox), for the `sbx...` prefixes the
sandbox gives every credential it issues, and for token-shaped values that are not
`REDACTED-` placeholders; then checks each interaction field by field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from vcr.serialize import deserialize
from vcr.serializers import yamlserializer

from tests.cassette_tests.cassette_support import (
    CASSETTE_SEEDS,
    CASSETTES_DIR,
    PLACEHOLDER_PREFIX,
    cassette_files,
    find_leaks,
    sandbox_secret_values,
)
from tests.sandbox import SECRET_PREFIXES, sandbox_secrets

SECRETS = sandbox_secret_values(CASSETTE_SEEDS)
SECRET_FIELDS = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "refresh_token", "id_token"}
    | {"client_secret", "client_id"}
)
_VCR_MODULE = re.compile(r"^pytestmark = .*pytest\.mark\.vcr", re.MULTILINE)


def cassette_modules() -> list[str]:
    """Test modules of this folder whose tests replay cassettes."""
    folder = Path(__file__).parent
    return sorted(p.stem for p in folder.glob("test_*.py") if _VCR_MODULE.search(p.read_text()))


def all_cassettes() -> list[Path]:
    files = cassette_files()
    assert files, f"no cassette under {CASSETTES_DIR}: record them with `nox -s record`"
    return files


def test_every_cassette_module_has_cassettes():
    modules = cassette_modules()
    assert modules, "no test module marks its tests with pytest.mark.vcr"
    all_cassettes()
    for module in modules:
        assert sorted((CASSETTES_DIR / module).glob("*.yaml")), f"no cassette for {module}"


def test_no_cassette_text_contains_a_secret_or_a_token():
    leaks = {}
    for path in all_cassettes():
        found = find_leaks(path.read_text(encoding="utf-8"), SECRETS)
        if found:
            leaks[str(path.relative_to(CASSETTES_DIR))] = found
    assert not leaks, json.dumps(leaks, indent=2)


def test_every_credential_field_of_every_interaction_is_a_placeholder():
    problems: list[str] = []
    for path in all_cassettes():
        name = path.relative_to(CASSETTES_DIR)
        requests, responses = deserialize(path.read_text(encoding="utf-8"), yamlserializer)[:2]
        for number, (request, response) in enumerate(zip(requests, responses, strict=True)):
            where = f"{name} #{number}"
            values = [
                (f"{where} query {key}", value)
                for key, value in parse_qsl(urlsplit(request.uri).query)
                if key.lower() in SECRET_FIELDS
            ]
            for header in ("Authorization", "X-API-Key"):
                if header in request.headers:
                    value = str(request.headers[header]).removeprefix("Bearer ")
                    values.append((f"{where} header {header}", value.removeprefix("Basic ")))
            body = request.body
            if body:
                text = body.decode() if isinstance(body, bytes) else str(body)
                values.extend(
                    (f"{where} form {key}", value)
                    for key, value in parse_qsl(text)
                    if key.lower() in SECRET_FIELDS
                )
            try:
                payload = json.loads(response["body"]["string"] or b"null")
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                values.extend(
                    (f"{where} response {key}", str(payload[key]))
                    for key in SECRET_FIELDS
                    if payload.get(key)
                )
            problems.extend(
                label for label, value in values if not value.startswith(PLACEHOLDER_PREFIX)
            )
    assert not problems, "\n".join(problems)


# --- the scanner itself -----------------------------------------------------------------------

SAMPLE_SECRETS = sandbox_secrets(min(CASSETTE_SEEDS))
PLANTED = {
    "client secret": f"body: client_secret={SAMPLE_SECRETS.client_secret}",
    "api key value": f"uri: http://127.0.0.1:8765/v1?x={SAMPLE_SECRETS.api_key}",
    "refresh token value": SAMPLE_SECRETS.refresh_token,
    "bearer token value": SAMPLE_SECRETS.bearer_token,
    "issued access token": 'string: \'{"access_token":"sbxaccess-0123456789abcdef"}\'',
    **{f"prefix {prefix}": f"x {prefix}00ff" for prefix in SECRET_PREFIXES},
    "json access_token": 'string: \'{"access_token":"eyJhbGciOi","expires_in":3600}\'',
    "json refresh_token": 'string: \'{"refresh_token": "1//0gabc"}\'',
    "escaped json token": 'string: "{\\"access_token\\":\\"abc\\"}"',
    "api_key query": "uri: http://127.0.0.1:8765/v1/groups?limit=25&api_key=live-123",
    "form refresh_token": "body: grant_type=refresh_token&refresh_token=1%2F%2F0abc",
    "form client_secret": "body: grant_type=client_credentials&client_secret=s3cr3t",
    "bearer header": "headers:\n      Authorization:\n      - Bearer eyJhbGciOiJIUzI1NiJ9",
    "basic header": "headers:\n      Authorization:\n      - Basic dXNlcjpwYXNzd29yZA==",
    "api key header": "headers:\n      X-API-Key:\n      - live-key-123",
}


@pytest.mark.parametrize("text", PLANTED.values(), ids=PLANTED.keys())
def test_the_scanner_finds_a_planted_leak(text):
    assert find_leaks(text, SECRETS)


def test_the_scanner_accepts_placeholders():
    clean = (
        "body: grant_type=refresh_token&client_id=REDACTED-client-id-1"
        "&client_secret=REDACTED-client-secret-1&refresh_token=REDACTED-refresh-1\n"
        "    headers:\n      Authorization:\n      - Bearer REDACTED-access-1\n"
        "      X-API-Key:\n      - REDACTED-api-key-1\n"
        "    uri: http://127.0.0.1:8765/v1/groups?limit=25&api_key=REDACTED-api-key-1\n"
        '      string: \'{"access_token":"REDACTED-access-2","token_type":"Bearer",'
        '"refresh_token":"REDACTED-refresh-2"}\'\n'
        '      WWW-Authenticate:\n      - Bearer error="invalid_token"\n'
        '      - Bearer realm="support-api-sandbox"\n'
        '      - Basic realm="support-api-sandbox"\n'
        '      string: \'{"subject":"The API token stopped syncing"}\'\n'
    )
    assert find_leaks(clean, SECRETS) == []
