"""Runnable examples: the five seed configurations, as `rest_api_source`-style dicts.

Each module holds one seed's config, with the same resources, paths, data selectors,
paginators, auth type and error handler as the seed, and runs it into DuckDB. `dlt init`
copies this folder with the source, so in your project run one with
`python -m support_api.examples.<module>` (in this repository:
`python -m sources.support_api.examples.<module>`), after setting `base_url` and the
secrets the module's docstring names. Seed `NNN` loads into `support_api_seed_NNN.duckdb`,
dataset `seed_NNN`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlt
from dlt.extract import DltSource

from .. import support_api_from_config

PLACEHOLDER_BASE_URL = "https://api.example.com"
"""The seeds' API root, used when `sources.support_api.base_url` is not configured."""

SeedConfig = Callable[[str], dict[str, Any]]
"""A seed's config, rooted at the given `base_url`."""


def seed_source_of(seed_config: SeedConfig) -> DltSource:
    """A seed's source, on the configured `base_url`.

    Args:
        seed_config: The seed module's `seed_config`.

    Returns:
        The dlt source.
    """
    base_url = dlt.config.get("sources.support_api.base_url", str) or PLACEHOLDER_BASE_URL
    return support_api_from_config(seed_config(base_url))


def run_seed(number: str, seed_config: SeedConfig) -> None:
    """Loads a seed's source into `support_api_seed_<number>.duckdb`, dataset `seed_<number>`.

    Args:
        number: The seed's number, e.g. `002`.
        seed_config: The seed module's `seed_config`.
    """
    pipeline = dlt.pipeline(
        f"support_api_seed_{number}", destination="duckdb", dataset_name=f"seed_{number}"
    )
    print(pipeline.run(seed_source_of(seed_config)))
