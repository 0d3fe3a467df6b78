"""The sources each variant runs, built the way a user of each would write them.

Plain dlt gets a `rest_api_source` config that reads every page of the sandbox correctly
(offset paging without a total needs `stop_after_empty_page`; cursor paging needs the page
size as a plain param). support_api runs with the defaults it ships: only what the endpoint
requires is passed (URL, credentials, resources, page size), never a tuning option.
"""

from __future__ import annotations

from typing import Any, Final, cast

from dlt.common.destination import TLoaderFileFormat
from dlt.extract import DltSource
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import RESTAPIConfig

from sources.support_api import support_api, support_api_from_config
from tests.bench.spec import RunSpec
from tests.sandbox import sandbox_secrets

START_DATE: Final = "2000-01-01T00:00:00Z"
"""Initial value of the plain incremental: the same as support_api's default start date."""

SEED001_SELECTORS: Final = {"tickets": "tickets", "ticket_comments": "comments"}
"""Where the `seed001` shape puts each table's rows (offset paging, no total)."""

CHILD_PATH: Final = "/v1/tickets/{resources.tickets.id}/comments"
"""The comments of each ticket in the `desk_nested` shape, as a rest_api dependent path."""
CURSOR_PAGINATOR: Final = {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}


def api_key(spec: RunSpec) -> str:
    """The sandbox API key of the spec's seed (never printed)."""
    return sandbox_secrets(spec.seed).api_key


def _auth_dict(spec: RunSpec) -> dict[str, Any]:
    return {"type": "api_key", "name": "api_key", "api_key": api_key(spec), "location": "query"}


def _plain_endpoint(spec: RunSpec, table: str) -> dict[str, Any]:
    if spec.shape == "seed001":
        return {
            "path": f"/v1/{table}",
            "data_selector": SEED001_SELECTORS[table],
            "paginator": {
                "type": "offset",
                "limit": spec.page_size,
                "total_path": None,
                "stop_after_empty_page": True,
            },
        }
    params: dict[str, Any] = {"limit": spec.page_size}
    if spec.incremental:
        params["updated_since"] = {
            "type": "incremental",
            "cursor_path": "updated_at",
            "initial_value": START_DATE,
        }
    return {
        "path": f"/v1/{table}",
        "data_selector": "data",
        "params": params,
        "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
    }


def nested_config(spec: RunSpec, *, parallelized: bool = False) -> dict[str, Any]:
    """The dict of the `desk_nested` shape: tickets, then every ticket's comments.

    Plain dlt and support_api get this same dict; `parallelized` adds dlt's
    `parallelized: True` to the dependent resource (the plain_parallelized variant).

    Args:
        spec: The run (its resources are `tickets` and `ticket_comments`).
        parallelized: Set `parallelized` on the comments resource.

    Returns:
        The config dict.
    """
    child_limit = spec.child_page_size or spec.page_size
    comments: dict[str, Any] = {
        "name": "ticket_comments",
        "endpoint": {
            "path": CHILD_PATH,
            "data_selector": "data",
            "params": {"limit": child_limit},
            "paginator": dict(CURSOR_PAGINATOR),
        },
    }
    if parallelized:
        comments["parallelized"] = True
    return {
        "client": {"base_url": spec.base_url, "auth": _auth_dict(spec)},
        "resources": [
            {
                "name": "tickets",
                "endpoint": {
                    "path": "/v1/tickets",
                    "data_selector": "data",
                    "params": {"limit": spec.page_size},
                    "paginator": dict(CURSOR_PAGINATOR),
                },
            },
            comments,
        ],
    }


def plain_config(spec: RunSpec) -> dict[str, Any]:
    """The `rest_api_source` config of a plain variant.

    Args:
        spec: The run.

    Returns:
        The config dict.
    """
    if spec.shape == "desk_nested":
        return nested_config(spec, parallelized=spec.variant == "plain_parallelized")
    return {
        "client": {"base_url": spec.base_url, "auth": _auth_dict(spec)},
        "resources": [
            {"name": table, "endpoint": _plain_endpoint(spec, table)} for table in spec.resources
        ],
    }


def support_api_source(spec: RunSpec) -> DltSource:
    """The support_api source of a run, with the package's shipped defaults.

    Args:
        spec: The run.

    Returns:
        The source.
    """
    if spec.shape == "desk_nested":
        return support_api_from_config(nested_config(spec))
    if spec.shape == "seed001":
        return support_api_from_config(
            {
                "client": {"base_url": spec.base_url, "auth": _auth_dict(spec)},
                "resources": [
                    {
                        "name": table,
                        "endpoint": {
                            "path": f"/v1/{table}",
                            "data_selector": SEED001_SELECTORS[table],
                            "paginator": {"type": "offset", "limit": spec.page_size},
                        },
                    }
                    for table in spec.resources
                ],
            }
        )
    credentials = APIKeyAuth(name="api_key", api_key=api_key(spec), location="query")
    source: DltSource = support_api(
        base_url=spec.base_url,
        credentials=credentials,
        resources=list(spec.resources),
        page_size=spec.page_size,
    )
    return source


def build_source(spec: RunSpec) -> DltSource:
    """The source a run loads.

    Args:
        spec: The run.

    Returns:
        The source, with the spec's `max_table_nesting` (set as a pipeline script sets it).
    """
    source: DltSource
    if spec.variant == "support_api":
        source = support_api_source(spec)
    else:
        source = rest_api_source(cast("RESTAPIConfig", plain_config(spec)))
    if spec.max_table_nesting is not None:
        source.max_table_nesting = spec.max_table_nesting
    return source


def loader_file_format(spec: RunSpec) -> TLoaderFileFormat | None:
    """`loader_file_format` passed to `pipeline.run`: only the tuned plain run sets one."""
    return "jsonl" if spec.variant == "plain_jsonl" else None
