"""`nox -s demo`: sync the support desk into a local DuckDB file, then sync again incrementally.

Without a configured `base_url` the bundled sandbox API is started on 127.0.0.1, the pipeline
script runs against it, the sandbox updates and creates some records, and the script runs a
second time to show an incremental load. With `SOURCES__SUPPORT_API__BASE_URL` (or `base_url`
in `.dlt/config.toml`) set, the script runs once against that API instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

from tests.sandbox import sandbox_secrets

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_SCRIPT = ROOT / "sources" / "support_api_pipeline.py"
SANDBOX_SEED = 1
SANDBOX_SIZE = 2_000


def configured_base_url() -> str | None:
    """The real API's root if the user configured one."""
    if url := os.environ.get("SOURCES__SUPPORT_API__BASE_URL"):
        return url
    config = ROOT / ".dlt" / "config.toml"
    if config.exists():
        settings = tomllib.loads(config.read_text())
        url = settings.get("sources", {}).get("support_api", {}).get("base_url")
        return str(url) if url else None
    return None


def run_pipeline(env: dict[str, str], title: str) -> None:
    """Runs the pipeline script from the project root, as a user would."""
    print(f"\n=== {title} ===", flush=True)
    subprocess.run([sys.executable, str(PIPELINE_SCRIPT)], cwd=ROOT, env=env, check=True)


def main(workdir: Path) -> None:
    """Starts the sandbox (unless a real API is configured) and runs the pipeline twice."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "support_api.duckdb"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    if real_url := configured_base_url():
        print(f"Using the configured API at {real_url}")
        run_pipeline(env, "sync")
        return

    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sandbox",
            "--port",
            "0",
            "--seed",
            str(SANDBOX_SEED),
            "--size",
            str(SANDBOX_SIZE),
            "--shape",
            "desk",
            "--auth",
            "api_key_query",
            "--mutate-endpoint",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        ready = json.loads(sandbox.stdout.readline())
        url = ready["url"]
        print(f"Sandbox API (seed {SANDBOX_SEED}, {SANDBOX_SIZE} tickets) at {url}")
        secrets = sandbox_secrets(SANDBOX_SEED)
        env |= {
            "SOURCES__SUPPORT_API__BASE_URL": url,
            "SOURCES__SUPPORT_API__CREDENTIALS__API_KEY": secrets.api_key,
            "SOURCES__SUPPORT_API__CREDENTIALS__NAME": "api_key",
            "SOURCES__SUPPORT_API__CREDENTIALS__LOCATION": "query",
        }
        run_pipeline(env, "first run: full load")
        request = urllib.request.Request(  # noqa: S310 - loopback sandbox URL
            f"{url}/_sandbox/mutate?updates=25&creates=10", method="POST"
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback sandbox URL
            mutated = json.loads(response.read())["mutated"]
        print("\nThe sandbox API changed records:")
        for table, change in mutated.items():
            print(
                f"  {table:<24} {len(change['updated_ids']):>4} updated"
                f" {len(change['created_ids']):>4} created"
            )
        run_pipeline(env, "second run: incremental (only changed and new rows)")
        print(f"\nDuckDB file: {workdir / 'support_api.duckdb'}")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "demo_data")
