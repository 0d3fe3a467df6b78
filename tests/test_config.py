"""Bad config fails before any request, naming the key path, with secrets masked."""

from __future__ import annotations

import copy

import pytest
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

from sources.support_api import ConfigError, support_api, support_api_from_config
from tests.helpers import find_cause

SECRET = "sbxsecret-do-not-print-0123456789abcdef"

VALID = {
    "client": {
        "base_url": "http://127.0.0.1:9",
        "auth": {
            "type": "oauth2",
            "client_id": "client-id-1234567890",
            "client_secret": SECRET,
            "token_url": "http://127.0.0.1:9/oauth/token",
        },
    },
    "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
    "resources": [
        {"name": "tickets", "endpoint": {"path": "/v1/tickets", "data_selector": "data"}},
        {
            "name": "comments",
            "endpoint": {
                "path": "/v1/comments",
                "paginator": {"type": "cursor", "cursor_path": "next_cursor", "limit": 10},
            },
        },
    ],
}


def broken(mutate) -> dict:
    config = copy.deepcopy(VALID)
    mutate(config)
    return config


def test_valid_config_builds_without_any_request():
    source = support_api_from_config(VALID)
    assert set(source.resources) == {"tickets", "comments"}


CASES = [
    (lambda c: c.pop("client"), "client"),
    (lambda c: c["client"].pop("base_url"), "client.base_url"),
    (lambda c: c["client"].update(base_url="api.example.com"), "client.base_url"),
    (lambda c: c["client"].update(base_url=42), "client.base_url"),
    (lambda c: c["client"].update(bogus=1), "client.bogus"),
    (lambda c: c.update(extra={}), "extra"),
    (lambda c: c.update(resources=[]), "resources"),
    (lambda c: c["client"]["auth"].update(type="oauth3"), "client.auth.type"),
    (lambda c: c["client"]["auth"].pop("token_url"), "client.auth.token_url"),
    (lambda c: c["client"]["auth"].update(tokenurl="x"), "client.auth.tokenurl"),
    (
        lambda c: c["resources"][1]["endpoint"]["paginator"].update(type="scroll"),
        "resources[1].endpoint.paginator.type",
    ),
    (
        lambda c: c["resources"][1]["endpoint"]["paginator"].update(cursor_paht="x"),
        "resources[1].endpoint.paginator.cursor_paht",
    ),
    (
        lambda c: c["resources"][1]["endpoint"]["paginator"].update(limit=0),
        "resources[1].endpoint.paginator.limit",
    ),
    (
        lambda c: c["resources"][1]["endpoint"]["paginator"].update(
            cursor_param="c", cursor_body_path="a"
        ),
        "resources[1].endpoint.paginator",
    ),
    (
        lambda c: c["resources"][0]["endpoint"].update(paginator={"type": "offset"}),
        "resources[0].endpoint.paginator.limit",
    ),
    (
        lambda c: c["resources"][0]["endpoint"].update(error_handler={"max_retires": 2}),
        "resources[0].endpoint.error_handler.max_retires",
    ),
    (
        lambda c: c["resources"][0]["endpoint"].update(error_handler={"max_retries": -1}),
        "resources[0].endpoint.error_handler.max_retries",
    ),
    (
        lambda c: c["resources"][0]["endpoint"].update(
            error_handler={"retry_on_status_codes": [429, "500"]}
        ),
        "resources[0].endpoint.error_handler.retry_on_status_codes",
    ),
    (lambda c: c["resources"][0]["endpoint"].update(methd="GET"), "resources[0].endpoint.methd"),
    (lambda c: c["resources"][0].update(name=""), "resources[0].name"),
    (lambda c: c["resources"][1].update(name="tickets"), "resources[1].name"),
    (
        lambda c: c["resource_defaults"].update(write_disposition="upsert-ish"),
        "resource_defaults.write_disposition",
    ),
]


@pytest.mark.parametrize(("mutate", "key_path"), CASES, ids=[c[1] for c in CASES])
def test_bad_seed_config_names_the_key_path(mutate, key_path):
    with pytest.raises(ConfigError) as error:
        support_api_from_config(broken(mutate))
    assert error.value.key_path == key_path
    assert SECRET not in str(error.value)


def test_unknown_paginator_type_lists_the_choices():
    with pytest.raises(ConfigError) as error:
        support_api_from_config(
            broken(lambda c: c["resources"][1]["endpoint"]["paginator"].update(type="scroll"))
        )
    for choice in ("cursor", "offset", "page_number", "json_link", "header_link"):
        assert choice in str(error.value)


API_KEY = APIKeyAuth(name="api_key", api_key="sbxkey-0123456789abcdef", location="query")


def config_error_of(call) -> ConfigError:
    with pytest.raises(Exception) as error:  # noqa: PT011 - dlt may wrap the source's error
        call()
    found = find_cause(error.value, ConfigError)
    assert isinstance(found, ConfigError), error.value
    return found


def test_missing_base_url_names_the_key():
    with pytest.raises(ConfigFieldMissingException) as error:
        support_api(credentials=API_KEY)
    assert "base_url" in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "key_path"),
    [
        ({"resources": ["tickets", "tickes"]}, "resources"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": -5}, "page_size"),
        ({"lookback_seconds": -1}, "lookback_seconds"),
        (
            {"endpoints": {"tickets": {"paginator": {"type": "scroll"}}}},
            "endpoints.tickets.paginator.type",
        ),
        ({"endpoints": {"tickets": {"pth": "/x"}}}, "endpoints.tickets.pth"),
        ({"endpoints": {"widgets": {}}}, "endpoints.widgets"),
        ({"error_handler": {"backoff": 2}}, "error_handler.backoff"),
        ({"base_url": "ftp://example.com"}, "client.base_url"),
    ],
)
def test_bad_source_arguments_name_the_key(kwargs, key_path):
    arguments = {"base_url": "http://127.0.0.1:9", "credentials": API_KEY, **kwargs}
    error = config_error_of(lambda: support_api(**arguments))
    assert error.key_path == key_path
    assert "sbxkey-0123456789abcdef" not in str(error)


@pytest.mark.parametrize("runtime_field", ["lock", "clock", "token_transport", "token_store"])
def test_runtime_only_auth_fields_are_not_config_keys(runtime_field):
    config = broken(lambda c: c["client"]["auth"].update({runtime_field: "x"}))
    with pytest.raises(ConfigError) as error:
        support_api_from_config(config)
    assert error.value.key_path == f"client.auth.{runtime_field}"
    assert "client_secret" in str(error.value)  # the accepted keys are listed
