"""pytest plugin: dlt's own rest_api test suite, run against `support_api_from_config`.

Loaded with `-p support_api_parity_plugin` by `tests/dlt_suite/run.py` (`nox -s dlt_suite`),
with this folder and the project's `sources/` folder on `PYTHONPATH`, in a copy of dlt's
`tests` folder (that one is the `tests` package there: nothing here imports ours).

Before any test module is imported, `dlt.sources.rest_api.rest_api_source`,
`rest_api_resources` and `rest_api` are swapped for wrappers around the support_api package,
so every `from dlt.sources.rest_api import rest_api_source` in dlt's tests (and in dlt's own
pipeline template) gets ours. The tests that reach the internet are skipped: there is no
network here, and dlt's suite marks none of them. The few that fail on purpose (listed in
`sources/support_api/README.md`) are marked as expected failures, strictly.
"""

from __future__ import annotations

import os
from typing import Any

import dlt
import pytest
from dlt.common.schema import Schema
from dlt.common.schema.typing import TSchemaContract
from dlt.extract import DltResource, DltSource

PLAIN_ENV = "SUPPORT_API_DLT_SUITE_PLAIN"
"""Set to 1 to run the suite against plain dlt (a baseline) instead of support_api."""

NEEDS_NETWORK = {
    "tests/sources/rest_api/test_rest_api_pipeline_template.py::test_all_examples": (
        "dlt's pipeline template reads the GitHub API and pokeapi.apps.dlthub.com"
    ),
    "tests/sources/rest_api/test_rest_api_source.py::test_rest_api_config_provider": (
        "reads pokeapi.apps.dlthub.com"
    ),
    "tests/sources/rest_api/test_rest_api_source.py::test_rest_api_source": (
        "reads pokeapi.apps.dlthub.com"
    ),
    "tests/sources/rest_api/test_rest_api_source.py::test_dependent_resource": (
        "reads pokeapi.apps.dlthub.com"
    ),
    "tests/sources/rest_api/test_rest_api_source.py::test_rest_api_source_with_data_parameter": (
        "posts to httpbingo.org"
    ),
}
"""Tests (node ids without parameters) that need the internet, with what they reach."""

SUITE_CONCURRENCY = 1
"""Requests in flight per resource while dlt's suite runs: one after another, as plain dlt
sends them. A dozen of dlt's tests read the i-th request of their mock's history; concurrent
children (the default, 16) reorder those requests at random while loading the same rows, so
those tests would pass or fail by thread timing. The package's own suite tests the
concurrency (`tests/test_fan_out.py`, `tests/test_dict_windows.py`)."""

OFFLINE = "tests/sources/rest_api/integration/test_offline.py"

DELIBERATE = {
    "tests/sources/rest_api/configurations/test_configuration.py::test_invalid_configurations["
    "SOURCES__REST_API__INVALID_CONFIG__CREDENTIALS__API_KEY-ConfigFieldMissingException-"
    f"invalid_config{case}]": (
        "the source's config section is `support_api` (dlt: `rest_api`), so the missing"
        " key is SOURCES__SUPPORT_API__INVALID_CONFIG__CREDENTIALS__API_KEY"
    )
    for case in (2, 3, 4)
} | {
    f"{OFFLINE}::test_secret_redaction_in_http_errors": (
        "status errors quote the start of the body (secrets masked); dlt quotes none"
    ),
}
"""Tests that fail on purpose (see "Differences from plain dlt" in sources/support_api/README.md):
expected to fail (strict: one that passes is reported, so the list stays true)."""


def rest_api_source(
    config: Any,
    name: str | None = None,
    section: str | None = None,
    max_table_nesting: int | None = None,
    root_key: bool | None = None,
    schema: Schema | None = None,
    schema_contract: TSchemaContract | None = None,
    parallelized: bool = False,
) -> DltSource:
    """`rest_api_source` with dlt's signature and defaults, built by support_api."""
    from support_api import support_api_from_config  # noqa: PLC0415 - on PYTHONPATH at run time

    return support_api_from_config(  # type: ignore[no-any-return]
        config,
        name=name,
        section=section,
        max_table_nesting=max_table_nesting,
        root_key=root_key,
        schema=schema,
        schema_contract=schema_contract,
        parallelized=parallelized,
        concurrency=SUITE_CONCURRENCY,
    )


def rest_api_resources(config: Any) -> list[DltResource]:
    """`rest_api_resources`, built by support_api."""
    from support_api import support_api_resources  # noqa: PLC0415 - on PYTHONPATH at run time

    return support_api_resources(config)  # type: ignore[no-any-return]


@dlt.source(name="rest_api", section="rest_api")
def rest_api(
    client: Any = dlt.config.value,
    resources: Any = dlt.config.value,
    resource_defaults: Any = None,
) -> list[DltResource]:
    """dlt's `rest_api` source function (config injected the same way), built by support_api."""
    return rest_api_resources(
        {"client": client, "resources": resources, "resource_defaults": resource_defaults}
    )


def _swap() -> None:
    """Puts the wrappers where dlt's tests and dlt's template import them from."""
    import dlt.sources.rest_api as module  # noqa: PLC0415 - patched, not used

    module.rest_api_source = rest_api_source
    module.rest_api_resources = rest_api_resources
    module.rest_api = rest_api


def pytest_configure(config: pytest.Config) -> None:
    """Swaps dlt's builders for ours (unless `SUPPORT_API_DLT_SUITE_PLAIN=1`)."""
    config.addinivalue_line("markers", "needs_network: reaches the internet (skipped here)")
    if os.environ.get(PLAIN_ENV) != "1":
        _swap()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skips the tests that reach the internet; expects the deliberate differences to fail."""
    plain = os.environ.get(PLAIN_ENV) == "1"
    for item in items:
        reason = NEEDS_NETWORK.get(item.nodeid.split("[", 1)[0])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"needs the internet: {reason}"))
        difference = DELIBERATE.get(item.nodeid)
        if difference is not None and not plain:
            item.add_marker(pytest.mark.xfail(reason=f"deliberate: {difference}", strict=True))
