"""Meta tests: a replay that does not match its cassette fails, in both directions.

Each test writes a tiny cassette by hand (as recorded at `REPLAY_URL`), replays it with vcrpy
directly, in record mode `none` and with the suite's own options (`cassette_options`), and
checks what the autouse `_cassette_fully_played` fixture relies on: a request missing from
the cassette raises, is not retried away, and is reported by `PlaybackGuard` even when
swallowed; an interaction left unplayed is reported too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import vcr
from dlt.pipeline.exceptions import PipelineStepFailed
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import FilesystemPersister
from vcr.request import Request
from vcr.serializers import yamlserializer

from sources.support_api import support_api_from_config
from tests.cassette_tests.cassette_support import (
    REPLAY_URL,
    CassetteRedactor,
    PlaybackGuard,
    cassette_options,
)
from tests.helpers import find_cause, make_pipeline, table_ids

PATH = "/kinds/cursor/tickets"
FIRST_PAGE = f"{REPLAY_URL}{PATH}?limit=2"
SECOND_PAGE = f"{REPLAY_URL}{PATH}?limit=2&cursor=c2"


def page(ids: list[int], next_cursor: str | None) -> dict[str, Any]:
    rows = [{"id": i, "updated_at": "2024-01-01T00:00:00Z"} for i in ids]
    return {"data": rows, "next_cursor": next_cursor}


def write_cassette(path: Path, interactions: list[tuple[str, dict[str, Any]]]) -> Path:
    """Saves GET interactions (URI, JSON body) the way vcrpy records them."""
    requests_, responses = [], []
    for uri, payload in interactions:
        body = json.dumps(payload).encode()
        requests_.append(Request("GET", uri, None, {"Accept": "*/*"}))
        responses.append(
            {
                "status": {"code": 200, "message": "OK"},
                "headers": {
                    "Content-Type": ["application/json"],
                    "Content-Length": [str(len(body))],
                },
                "body": {"string": body},
            }
        )
    FilesystemPersister.save_cassette(
        path, {"requests": requests_, "responses": responses}, serializer=yamlserializer
    )
    return path


def replay(path: Path) -> Any:
    """Replays `path` as the cassette tests do: record mode none, the suite's matching."""
    return vcr.VCR(record_mode="none").use_cassette(str(path), **cassette_options())


def cursor_walk(base_url: str = REPLAY_URL) -> Any:
    config = {
        "client": {"base_url": base_url},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "tickets",
                "endpoint": {
                    "path": PATH,
                    "paginator": {
                        "type": "cursor",
                        "cursor_path": "next_cursor",
                        "cursor_param": "cursor",
                        "limit": 2,
                    },
                },
            }
        ],
    }
    return support_api_from_config(config)


def test_the_full_cassette_replays_cleanly(tmp_path):
    cassette_path = write_cassette(
        tmp_path / "full.yaml",
        [(FIRST_PAGE, page([1, 2], "c2")), (SECOND_PAGE, page([3], None))],
    )
    pipeline = make_pipeline(tmp_path)
    with replay(cassette_path) as cassette:
        guard = PlaybackGuard(cassette)
        pipeline.run(cursor_walk())
    assert table_ids(pipeline, "tickets") == [1, 2, 3]
    assert cassette.all_played
    assert guard.problems() == []
    guard.assert_fully_played()


def test_a_request_missing_from_the_cassette_fails_the_run_and_is_not_retried(
    tmp_path, retry_sleeps
):
    cassette_path = write_cassette(tmp_path / "short.yaml", [(FIRST_PAGE, page([1, 2], "c2"))])
    pipeline = make_pipeline(tmp_path)
    with replay(cassette_path) as cassette:
        guard = PlaybackGuard(cassette)
        with pytest.raises(PipelineStepFailed) as failure:  # swallowed here, on purpose
            pipeline.run(cursor_walk())

    assert find_cause(failure.value, CannotOverwriteExistingCassetteException) is not None
    assert retry_sleeps == []  # surfaced at once: dlt's retries do not take it for a 5xx
    assert guard.problems() == [f"request not in the cassette: GET {SECOND_PAGE}"]
    with pytest.raises(AssertionError, match="request not in the cassette"):
        guard.assert_fully_played()


def test_an_interaction_left_unplayed_fails_the_check(tmp_path):
    cassette_path = write_cassette(
        tmp_path / "long.yaml",
        [(FIRST_PAGE, page([1, 2], None)), (SECOND_PAGE, page([3], None))],
    )
    pipeline = make_pipeline(tmp_path)
    with replay(cassette_path) as cassette:
        guard = PlaybackGuard(cassette)
        pipeline.run(cursor_walk())  # the first page says it is the last: page 2 is not asked

    assert table_ids(pipeline, "tickets") == [1, 2]
    assert not cassette.all_played
    with pytest.raises(AssertionError, match=r"recorded but never played: GET .*cursor=c2"):
        guard.assert_fully_played()


def test_a_recorded_response_is_played_once_only(tmp_path):
    cassette_path = write_cassette(tmp_path / "once.yaml", [(FIRST_PAGE, page([1], None))])
    with replay(cassette_path) as cassette:
        guard = PlaybackGuard(cassette)
        assert requests.get(FIRST_PAGE, timeout=5).json() == page([1], None)
        with pytest.raises(CannotOverwriteExistingCassetteException):
            requests.get(FIRST_PAGE, timeout=5)
    assert guard.problems() == [f"request not in the cassette: GET {FIRST_PAGE}"]


def test_matching_ignores_the_port_and_secrets(tmp_path):
    cassette_path = write_cassette(
        tmp_path / "port.yaml", [(f"{FIRST_PAGE}&api_key=REDACTED-api-key-1", page([1], None))]
    )
    with replay(cassette_path) as cassette:
        guard = PlaybackGuard(cassette)
        url = f"http://127.0.0.1:54321{PATH}?limit=2&api_key=sbxkey-any-value"
        assert requests.get(url, timeout=5).json() == page([1], None)
    guard.assert_fully_played()


def test_every_replayed_vcr_test_gets_the_check(request):
    assert "_cassette_fully_played" in request.fixturenames


def test_the_redactor_is_consistent_and_fixes_the_recorded_response():
    redactor = CassetteRedactor()
    body = json.dumps({"access_token": "sbxaccess-1", "refresh_token": "sbxrefresh-2"}).encode()
    response = redactor.before_record_response(
        {
            "status": {"code": 200, "message": "OK"},
            "headers": {
                "Date": ["Mon, 01 Jan 2024 00:00:00 GMT"],
                "Content-Length": [str(len(body))],
                "Link": ["<http://127.0.0.1:40123/v1/x?cursor=a>; rel=next"],
            },
            "body": {"string": body},
        }
    )
    stored = json.loads(response["body"]["string"])
    assert stored == {"access_token": "REDACTED-access-1", "refresh_token": "REDACTED-refresh-1"}
    assert response["headers"] == {
        "Content-Length": [str(len(response["body"]["string"]))],
        "Link": ["<http://127.0.0.1:8765/v1/x?cursor=a>; rel=next"],
    }
    form = b"grant_type=refresh_token&client_secret=sbxsecret-3&refresh_token=sbxrefresh-2"
    request = redactor.before_record_request(
        Request(
            "POST",
            "http://localhost:40123/oauth/token",
            form,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "python-requests/2.x",
                "Authorization": "Bearer sbxaccess-1",
            },
        )
    )
    assert request.uri == "http://127.0.0.1:8765/oauth/token"
    assert request.body == (
        b"grant_type=refresh_token&client_secret=REDACTED-client-secret-1"
        b"&refresh_token=REDACTED-refresh-1"
    )
    assert dict(request.headers) == {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "Bearer REDACTED-access-1",
    }


def test_the_options_survive_pytest_recordings_deepcopy():
    options = copy.deepcopy(cassette_options())  # pytest-recording copies `vcr_config`
    request_hook = options["before_record_request"]
    response_hook = options["before_record_response"]
    assert request_hook.__self__ is response_hook.__self__
    body = json.dumps({"access_token": "sbxaccess-9"}).encode()
    response_hook({"headers": {}, "body": {"string": body}})
    request = request_hook(
        Request("GET", f"{REPLAY_URL}/v1/x", None, {"Authorization": "Bearer sbxaccess-9"})
    )
    assert request.headers["Authorization"] == "Bearer REDACTED-access-1"
