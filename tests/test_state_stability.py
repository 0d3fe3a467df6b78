"""A scheduled run that finds nothing new loads nothing, whichever process runs it.

dlt keeps the hashes of the rows at the last cursor value in the state, in the order of
Python's string hashing, which every new process seeds anew (`PYTHONHASHSEED`). Each run here
is its own interpreter with its own seed, as a cron or orchestrator run is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

CHILD_RUN = """
import json, sys
import dlt
from sources.support_api import support_api, support_api_from_config
from dlt.sources.helpers.rest_client.auth import APIKeyAuth

kind, url, api_key, folder = sys.argv[1:5]
if kind == "catalogue":
    credentials = APIKeyAuth(name="api_key", api_key=api_key, location="query")
    source = support_api(base_url=url, credentials=credentials, resources=["tickets", "agents"])
else:
    from tests.test_plain_dlt_parity import plain_config

    config = plain_config(url, api_key)
    # `brands` has no incremental: every run loads it again
    config["resources"] = config["resources"][:2]
    source = support_api_from_config(config)
pipeline = dlt.pipeline(
    "stable", destination=dlt.destinations.duckdb(folder + "/destination.duckdb"),
    pipelines_dir=folder, dataset_name="desk",
)
info = pipeline.run(source)
resources = pipeline.state["sources"][source.name]["resources"]
hashes = {
    name: len(state["incremental"]["updated_at"]["unique_hashes"])
    for name, state in resources.items()
    if "incremental" in state
}
print(json.dumps({"loads": len(info.loads_ids), "hashes": hashes}))
"""


def run_in_fresh_process(kind: str, server, folder: Path, hash_seed: int) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "RUNTIME__LOG_LEVEL": "WARNING"}
    child = subprocess.run(  # noqa: S603 - our own interpreter running our own script
        [sys.executable, "-c", CHILD_RUN, kind, server.url, server.secrets.api_key, str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result: dict = json.loads(child.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "resources"),
    [
        # catalogue resources read in time windows and hand dlt arrow tables
        ("catalogue", {"tickets", "agents"}),
        # a dict: `agents` is read by `agent_groups`, so dlt's rest_api builds it (records)
        ("dict", {"agents"}),
    ],
)
def test_a_run_with_nothing_new_loads_no_state_in_any_process(
    kind, resources, sandbox_factory, tmp_path
):
    # seed 14 has four records at the newest `updated_at` of tickets and of agents: their
    # hashes are what a process could write in another order
    server = sandbox_factory(seed=14, size=400, shape="desk", auth="api_key_query")
    first = run_in_fresh_process(kind, server, tmp_path, hash_seed=0)
    assert first["loads"] == 1
    for name in resources:
        assert first["hashes"][name] >= 2, first
    # with dlt's own ordering, at least one of these seeds writes the hashes in another order
    for hash_seed in (1, 2, 3):
        again = run_in_fresh_process(kind, server, tmp_path, hash_seed=hash_seed)
        assert again["loads"] == 0, (hash_seed, again)
        assert again["hashes"] == first["hashes"]
