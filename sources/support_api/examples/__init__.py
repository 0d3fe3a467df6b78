"""Runnable examples: the five seed configurations, as `rest_api_source`-style dicts.

Each module holds one seed's config, with the same resources, paths, data selectors,
paginators, auth type and error handler as the seed, and runs it into DuckDB. `dlt init`
copies this folder with the source, so in your project run one with
`python -m support_api.examples.<module>` (in this repository:
`python -m sources.support_api.examples.<module>`), after setting `base_url` and the
secrets the module's docstring names. Seed `NNN` loads into `support_api_seed_NNN.duckdb`,
dataset `seed_NNN`.
"""
