"""Seed 000: one resource paged by a cursor read from the body, OAuth2 client credentials.

The API answers `{"data": [...], "next_cursor": "..."}`; the next page is asked for with
`?cursor=<next_cursor>`. The token comes from `<base_url>/oauth/token` (client credentials
grant). Records merge on `id`. The seed's retry rules (429, 500, 502, 503 and 504; 3 retries;
backoff factor 2) are the source's defaults, so, as in the seed, the config sets no
`error_handler`.

Settings:
    `.dlt/config.toml`: `[sources.support_api] base_url = "https://your.api"`.
    `.dlt/secrets.toml`, at the top level as the seed reads them (`dlt.secrets["client_id"]`):
    `client_id` and `client_secret` (or env vars `CLIENT_ID`, `CLIENT_SECRET`).

Run `python -m support_api.examples.seed_000_cursor_oauth2` in a `dlt init` project.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.extract import DltSource

from . import run_seed, seed_source_of


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
                "name": "resource_name",
                "endpoint": {
                    "path": "/v1/resource",
                    "data_selector": "data",
                    "paginator": {
                        "type": "cursor",
                        "cursor_path": "next_cursor",
                        "cursor_param": "cursor",
                    },
                },
            }
        ],
    }


def seed_source() -> DltSource:
    """The seed's source, on the configured `base_url`.

    Returns:
        The dlt source.
    """
    return seed_source_of(seed_config)


if __name__ == "__main__":
    run_seed("000", seed_config)
