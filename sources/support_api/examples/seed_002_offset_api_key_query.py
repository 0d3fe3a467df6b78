"""Seed 002: customer records, offset paging by 100, an API key in the query string.

One resource reads `data` from `/v1/resource`, paged with `?offset=&limit=100` until a short
or empty page; every request carries `?api_key=<key>`. Records merge on `id`. The seed's retry
rules (429, 500, 502, 503 and 504; 3 retries; backoff factor 2) are the source's defaults, so,
as in the seed, the config sets no `error_handler`.

Settings:
    `.dlt/config.toml`: `[sources.support_api] base_url = "https://your.api"`.
    `.dlt/secrets.toml`, at the top level as the seed reads it (`dlt.secrets["api_key"]`):
    `api_key` (or the env var `API_KEY`).

Run `python -m support_api.examples.seed_002_offset_api_key_query` in a `dlt init` project.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.extract import DltSource

from . import run_seed, seed_source_of


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
                "type": "api_key",
                "name": "api_key",
                "api_key": dlt.secrets["api_key"],
                "location": "query",
            },
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
        },
        "resources": [
            {
                "name": "customer_support_data",
                "endpoint": {
                    "path": "/v1/resource",
                    "data_selector": "data",
                    "paginator": {
                        "type": "offset",
                        "limit": 100,
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
    run_seed("002", seed_config)
