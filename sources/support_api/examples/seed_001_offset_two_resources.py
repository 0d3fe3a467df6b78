"""Seed 001: tickets and their comments, offset paging by 100, OAuth2 client credentials.

Two resources on their own paths, each reading its list from its own key (`tickets`,
`comments`) and paged with `?offset=&limit=100` until a short or empty page. The token comes
from `<base_url>/oauth/token` (client credentials grant). Records merge on `id`. Every
endpoint carries the seed's `error_handler` block: retry 429, 500, 502, 503 and 504, at most
3 times, backoff factor 2.

Settings:
    `.dlt/config.toml`: `[sources.support_api] base_url = "https://your.api"`.
    `.dlt/secrets.toml`, at the top level as the seed reads them (`dlt.secrets["client_id"]`):
    `client_id` and `client_secret` (or env vars `CLIENT_ID`, `CLIENT_SECRET`).

Run `python -m support_api.examples.seed_001_offset_two_resources` in a `dlt init` project.
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
    """The seed's config, rooted at `base_url` (its token URL too).

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
                "token_url": f"{base_url}/oauth/token",
            },
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
        },
        "resources": [
            {
                "name": "support_tickets",
                "endpoint": {
                    "path": "/v1/tickets",
                    "data_selector": "tickets",
                    "error_handler": ERROR_HANDLER,
                    "paginator": {
                        "type": "offset",
                        "limit": 100,
                    },
                },
            },
            {
                "name": "ticket_comments",
                "endpoint": {
                    "path": "/v1/ticket_comments",
                    "data_selector": "comments",
                    "error_handler": ERROR_HANDLER,
                    "paginator": {
                        "type": "offset",
                        "limit": 100,
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
    run_seed("001", seed_config)
