"""Every seed configuration runs as written: the examples in `sources/support_api/examples/`.

Each example module holds one seed document's `rest_api_source` config (same resources, paths,
selectors, paginators, auth and error handler) and reads its secrets and `base_url` from dlt's
config; the tests run each module's `seed_source()` as a user would, with only
`sources.support_api.base_url` (and the secrets) pointed at a sandbox serving that seed's shape.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sources.support_api import resources as support_resources
from tests.helpers import (
    arrow_tables,
    loaded_file_formats,
    loaded_tables,
    make_pipeline,
    table_ids,
)
from tests.sandbox import Fault

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "sources" / "support_api" / "examples"
EXAMPLES_PACKAGE = "sources.support_api.examples"


NESTED_TABLES = frozenset({"tickets", "organizations"})
"""Sandbox tables whose records hold lists: dlt makes child tables of them."""


@dataclass(frozen=True)
class Seed:
    prefix: str
    auth: str
    tables: dict[str, str]  # resource name -> sandbox table
    paths: dict[str, str]  # resource name -> path


SEEDS = [
    Seed("000", "oauth2", {"resource_name": "tickets"}, {"resource_name": "/v1/resource"}),
    Seed(
        "001",
        "oauth2",
        {"support_tickets": "tickets", "ticket_comments": "ticket_comments"},
        {"support_tickets": "/v1/tickets", "ticket_comments": "/v1/ticket_comments"},
    ),
    Seed(
        "002",
        "api_key_query",
        {"customer_support_data": "customers"},
        {"customer_support_data": "/v1/resource"},
    ),
    Seed("003", "oauth2", {"resource_name": "tickets"}, {"resource_name": "/v1/resource"}),
    Seed(
        "004",
        "oauth2",
        {"organizations": "organizations", "agents": "agents", "tickets": "tickets"},
        {"organizations": "/organizations", "agents": "/agents", "tickets": "/tickets"},
    ),
]


def seed_example(prefix: str) -> ModuleType:
    """The example module of a seed: `sources/support_api/examples/seed_<prefix>_*.py`."""
    (path,) = EXAMPLES_DIR.glob(f"seed_{prefix}_*.py")
    return importlib.import_module(f"{EXAMPLES_PACKAGE}.{path.stem}")


def seed_error_handler(prefix: str) -> dict[str, Any] | None:
    """The `error_handler` block the seed's example sets on its endpoints, if it sets one."""
    handler: dict[str, Any] | None = getattr(seed_example(prefix), "ERROR_HANDLER", None)
    return handler


def build_seed_source(seed: Seed, server, monkeypatch):
    """The example's source as a user runs it, configured through env vars for the sandbox."""
    secrets = server.secrets
    monkeypatch.setenv("SOURCES__SUPPORT_API__BASE_URL", server.url)
    monkeypatch.setenv("CLIENT_ID", secrets.client_id)
    monkeypatch.setenv("CLIENT_SECRET", secrets.client_secret)
    monkeypatch.setenv("API_KEY", secrets.api_key)
    monkeypatch.setenv("REFRESH_TOKEN", secrets.refresh_token)
    monkeypatch.setenv("TOKEN_REFRESH_ENDPOINT", f"{server.url}/oauth/token")
    return seed_example(seed.prefix).seed_source()


def test_every_seed_has_one_example_whose_endpoints_carry_its_error_handler(monkeypatch):
    for name in ("CLIENT_ID", "CLIENT_SECRET", "API_KEY", "REFRESH_TOKEN"):
        monkeypatch.setenv(name, "unused")
    monkeypatch.setenv("TOKEN_REFRESH_ENDPOINT", "http://127.0.0.1:1/oauth/token")
    for seed in SEEDS:
        example = seed_example(seed.prefix)
        config = example.seed_config("http://127.0.0.1:1")
        endpoints = {r["name"]: r["endpoint"] for r in config["resources"]}
        assert {name: e["path"] for name, e in endpoints.items()} == seed.paths, seed.prefix
        handler = seed_error_handler(seed.prefix)
        assert [e.get("error_handler") for e in endpoints.values()] == [handler] * len(endpoints)


@pytest.mark.parametrize("seed", SEEDS, ids=[s.prefix for s in SEEDS])
def test_seed_config_loads_every_row_exactly_once(
    seed, sandbox_factory, tmp_path, monkeypatch, insecure_loopback_oauth
):
    server = sandbox_factory(
        seed=int(seed.prefix) + 40, size=230, shape=f"seed{seed.prefix}", auth=seed.auth
    )
    pipeline = make_pipeline(tmp_path)
    for _ in range(2):
        source = build_seed_source(seed, server, monkeypatch)
        pipeline.run(source)
    for resource, table in seed.tables.items():
        assert table_ids(pipeline, resource) == sorted(server.dataset.ids(table)), resource


@pytest.mark.parametrize("seed", SEEDS, ids=[s.prefix for s in SEEDS])
@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_seed_retry_behaviour(
    seed, status, sandbox_factory, tmp_path, monkeypatch, insecure_loopback_oauth, retry_sleeps
):
    server = sandbox_factory(seed=7, size=60, shape=f"seed{seed.prefix}", auth=seed.auth)
    handler = seed_error_handler(seed.prefix)
    retried = (handler or {}).get("retry_on_status_codes", [429, 500, 502, 503, 504])
    resource, path = next(iter(seed.paths.items()))
    server.inject(path, [Fault(status=status)])
    pipeline = make_pipeline(tmp_path)
    source = build_seed_source(seed, server, monkeypatch).with_resources(resource)
    if status in retried:
        pipeline.run(source)
        assert retry_sleeps == [2]
        assert table_ids(pipeline, resource) == sorted(server.dataset.ids(seed.tables[resource]))
    else:
        with pytest.raises(Exception, match=str(status)):
            pipeline.run(source)
        assert server.count(path=path) == 1
        assert retry_sleeps == []


def test_seed_003_is_the_one_that_does_not_retry_504():
    handlers = {seed.prefix: seed_error_handler(seed.prefix) for seed in SEEDS}
    assert (handlers["003"] or {}).get("retry_on_status_codes") == [429, 500, 502, 503]
    assert all(
        504 in (h or {"retry_on_status_codes": [504]})["retry_on_status_codes"]
        for p, h in handlers.items()
        if p != "003"
    )


@pytest.mark.parametrize("seed", SEEDS, ids=[s.prefix for s in SEEDS])
def test_arrow_batches_load_what_the_row_path_loads(
    seed, sandbox_factory, tmp_path, monkeypatch, insecure_loopback_oauth
):
    results: dict[str, Any] = {}
    as_arrow: set[str] = set()
    for variant in ("arrow", "rows"):
        # twin servers: the same data and the same changes for both variants
        server = sandbox_factory(
            seed=int(seed.prefix) + 60, size=180, shape=f"seed{seed.prefix}", auth=seed.auth
        )
        if variant == "rows":
            # records only, loaded from jsonl: the arrow variant's nested tables load from
            # parquet, so this compares both load formats of dlt's row path as well
            monkeypatch.setattr(support_resources, "loads_parquet", lambda: False)
            monkeypatch.setattr(support_resources, "fast_file_format", lambda *_: "jsonl")
        pipeline = make_pipeline(tmp_path, f"seed_{variant}")
        pipeline.run(build_seed_source(seed, server, monkeypatch))
        if variant == "arrow":
            as_arrow = arrow_tables(pipeline)
            assert loaded_file_formats(pipeline) == {"parquet"}
        else:
            assert loaded_file_formats(pipeline) == {"jsonl"}
        server.mutate(updates=12, creates=5)
        pipeline.run(build_seed_source(seed, server, monkeypatch))
        results[variant] = loaded_tables(pipeline)
    for table, loaded in results["rows"].items():
        assert results["arrow"][table]["columns"] == loaded["columns"], table
        assert results["arrow"][table]["rows"] == loaded["rows"], table
    assert results["arrow"].keys() == results["rows"].keys()
    # records with nested lists stay records (dlt's normalizer makes their child tables)
    flat = {r for r, table in seed.tables.items() if table not in NESTED_TABLES}
    assert as_arrow == flat
