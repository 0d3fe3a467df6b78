"""Every seed document's config runs as written: only the import line changes.

The Python block of each file in `../shared/seeds/` is executed verbatim (the `//` comment line
of 004 dropped), with `https://api.example.com` pointed at a sandbox serving that seed's shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
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

SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"
PLAIN_IMPORT = "from dlt.sources.rest_api import rest_api_source"
OUR_IMPORT = "from sources.support_api import support_api_from_config as rest_api_source"


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


def seed_document(prefix: str) -> str:
    (path,) = SEEDS_DIR.glob(f"{prefix}_*.txt")
    return path.read_text()


def seed_code(prefix: str, base_url: str) -> str:
    """The seed's Python block with the import line changed and the URL pointed at base_url."""
    block = re.search(r"```python\n(.*?)```", seed_document(prefix), re.DOTALL)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if not line.strip().startswith("//")]
    code = "\n".join(lines)
    assert PLAIN_IMPORT in code
    return code.replace(PLAIN_IMPORT, OUR_IMPORT).replace("https://api.example.com", base_url)


def seed_error_handler(prefix: str) -> dict[str, Any] | None:
    """The `error_handler` block the seed document gives, if it writes one."""
    match = re.search(r'"error_handler":\s*(\{.*?\})', seed_document(prefix), re.DOTALL)
    return json.loads(match.group(1)) if match else None


def build_seed_source(seed: Seed, server, monkeypatch, error_handler=None):
    secrets = server.secrets
    monkeypatch.setenv("CLIENT_ID", secrets.client_id)
    monkeypatch.setenv("CLIENT_SECRET", secrets.client_secret)
    monkeypatch.setenv("API_KEY", secrets.api_key)
    monkeypatch.setenv("REFRESH_TOKEN", secrets.refresh_token)
    monkeypatch.setenv("TOKEN_REFRESH_ENDPOINT", f"{server.url}/oauth/token")
    code = seed_code(seed.prefix, server.url)
    if error_handler is not None:
        # as the seed's "Error Handling" section says: the block sits in each endpoint
        code = code.replace(
            '"data_selector":', f'"error_handler": {json.dumps(error_handler)}, "data_selector":'
        )
    namespace: dict[str, Any] = {}
    exec(compile(code, f"seed_{seed.prefix}", "exec"), namespace)  # noqa: S102 - the seed is the test input
    return namespace["source"]


@pytest.mark.parametrize("seed", SEEDS, ids=[s.prefix for s in SEEDS])
def test_seed_config_loads_every_row_exactly_once(
    seed, sandbox_factory, tmp_path, monkeypatch, insecure_loopback_oauth
):
    server = sandbox_factory(
        seed=int(seed.prefix) + 40, size=230, shape=f"seed{seed.prefix}", auth=seed.auth
    )
    pipeline = make_pipeline(tmp_path)
    for _ in range(2):
        source = build_seed_source(seed, server, monkeypatch, seed_error_handler(seed.prefix))
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
    source = build_seed_source(seed, server, monkeypatch, handler).with_resources(resource)
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
