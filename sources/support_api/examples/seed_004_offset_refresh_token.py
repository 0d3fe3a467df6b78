"""Seed 004: organizations, agents and tickets, offset paging by 50, an OAuth2 refresh token.

Three resources at the API root's `/organizations`, `/agents` and `/tickets`, each reading
`data` and paged with `?offset=&limit=50` until a short or empty page. Access tokens come
from the refresh token grant at the URL held in the `token_refresh_endpoint` secret; a
refresh token the API rotates is kept in the source's token store. Records merge on `id`.
Every endpoint carries the seed's `error_handler` block: retry 429, 500, 502, 503 and 504,
at most 3 times, backoff factor 2. More resources follow the same pattern.

Settings:
    `.dlt/config.toml`: `[sources.support_api] base_url = "https://your.api"`.
    `.dlt/secrets.toml`, at the top level as the seed reads them (`dlt.secrets["client_id"]`):
    `client_id`, `client_secret`, `refresh_token` and `token_refresh_endpoint` (or env vars
    `CLIENT_ID`, `CLIENT_SECRET`, `REFRESH_TOKEN`, `TOKEN_REFRESH_ENDPOINT`).

Run `python -m support_api.examples.seed_004_offset_refresh_token` in a `dlt init` project.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.extract import DltSource

from . import run_seed, seed_source_of

ERROR_HANDLER: dict[str, Any] = {
    "retry_on_status_codes": [429, 500, 502, 503, 504],
    "max_retries": 3,
    "backoff_factor": 2,
}
"""The seed's retry rules, set on each endpoint."""


def seed_config(base_url: str) -> dict[str, Any]:
    """The seed's config, rooted at `base_url`.

    Args:
        base_url: The API root.

    Returns:
        The `rest_api_source`-style config.
    """
    return {
        "client": {
            "base_url": base_url,
            "auth": {
                "type": "oauth2",
                "client_id": dlt.secrets["client_id"],
                "client_secret": dlt.secrets["client_secret"],
                "refresh_token": dlt.secrets["refresh_token"],
                "token_url": dlt.secrets["token_refresh_endpoint"],
            },
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
        },
        "resources": [
            {
                "name": "organizations",
                "endpoint": {
                    "path": "/organizations",
                    "data_selector": "data",
                    "error_handler": ERROR_HANDLER,
                    "paginator": {
                        "type": "offset",
                        "limit": 50,
                    },
                },
            },
            {
                "name": "agents",
                "endpoint": {
                    "path": "/agents",
                    "data_selector": "data",
                    "error_handler": ERROR_HANDLER,
                    "paginator": {
                        "type": "offset",
                        "limit": 50,
                    },
                },
            },
            {
                "name": "tickets",
                "endpoint": {
                    "path": "/tickets",
                    "data_selector": "data",
                    "error_handler": ERROR_HANDLER,
                    "paginator": {
                        "type": "offset",
                        "limit": 50,
                    },
                },
            },
        ],
    }


def seed_source() -> DltSource:
    """The seed's source, on the configured `base_url`.

    Returns:
        The dlt source.
    """
    return seed_source_of(seed_config)


if __name__ == "__main__":
    run_seed("004", seed_config)
