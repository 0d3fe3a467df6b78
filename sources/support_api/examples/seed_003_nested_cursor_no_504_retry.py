"""Seed 003: one resource paged by a nested cursor, OAuth2 client credentials, 504 not retried.

The API answers `{"data": [...], "paging": {"next": {"after": "..."}}}`; the next page is
asked for with `?after=<cursor>&limit=100`. The token comes from `<base_url>/oauth/v1/token`
(client credentials grant). Records merge on `id`. The endpoint carries the seed's
`error_handler` block, the only seed that leaves 504 out: retry 429, 500, 502 and 503, at
most 3 times, backoff factor 2; a 504 fails the run at once.

Settings:
    `.dlt/config.toml`: `[sources.support_api] base_url = "https://your.api"`.
    `.dlt/secrets.toml`, at the top level as the seed reads them (`dlt.secrets["client_id"]`):
    `client_id` and `client_secret` (or env vars `CLIENT_ID`, `CLIENT_SECRET`).

Run `python -m support_api.examples.seed_003_nested_cursor_no_504_retry` in a `dlt init`
project.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.extract import DltSource

from . import run_seed, seed_source_of

ERROR_HANDLER: dict[str, Any] = {
    "retry_on_status_codes": [429, 500, 502, 503],
    "max_retries": 3,
    "backoff_factor": 2,
}
"""The seed's retry rules (no 504), set on the endpoint."""


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
                "token_url": f"{base_url}/oauth/v1/token",
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
                    "error_handler": ERROR_HANDLER,
                    "paginator": {
                        "type": "cursor",
                        "limit": 100,
                        "cursor_param": "after",
                        "cursor_path": "paging.next.after",
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
    run_seed("003", seed_config)
