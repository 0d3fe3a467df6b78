"""`dlt init support_api duckdb --location <this repository>` gives a project that runs.

`dlt init` reads a verified-sources repository: a git repository with the source under
`sources/`. The test snapshots the working tree's `sources/` (uncommitted work included) into a
throwaway git repository, runs `dlt init` in an empty folder, fills in `.dlt/` as the README
tells a user to, and runs the generated pipeline script against the sandbox. A local path
needs no network: `dlt init` only clones when `--location` is a URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import tomlkit
from dlt._workspace.cli.requirements import SourceRequirements

from tests.sandbox import TABLES

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "sources"
DLT_CLI = Path(sys.executable).with_name("dlt")


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs a command, failing the test with its output when it exits non-zero."""
    result = subprocess.run(  # noqa: S603 - our own interpreter, dlt's CLI and git, no shell
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def isolated_env(home: Path) -> dict[str, str]:
    """The environment of a user with an empty home: no dlt or git settings, no telemetry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "DESTINATION__", "GIT_", "SUPPORT_API_"))
    }
    return env | {
        "HOME": str(home),
        "DLT_DATA_DIR": str(home / ".dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "GIT_CONFIG_NOSYSTEM": "1",
        "SUPPORT_API_PROGRESS": "none",
    }


def snapshot_repository(dest: Path, env: dict[str, str]) -> Path:
    """A git repository holding a copy of the working tree's `sources/`, committed."""
    shutil.copytree(SOURCES, dest / "sources", ignore=shutil.ignore_patterns("__pycache__"))
    git = shutil.which("git")
    assert git, "dlt init needs git"
    identity = ["-c", "user.name=support_api tests", "-c", "user.email=tests@example.invalid"]
    run([git, "init", "--quiet", "--initial-branch=main"], dest, env)
    run([git, "add", "--all"], dest, env)
    run([git, *identity, "commit", "--quiet", "--no-gpg-sign", "-m", "snapshot"], dest, env)
    return dest


def test_requirements_parse_as_dlt_init_reads_them():
    # dlt init reads every non-empty line as a requirement: a comment line fails it
    text = (SOURCES / "support_api" / "requirements.txt").read_text()
    requirements = SourceRequirements.from_string(text)
    assert requirements.is_installed_dlt_compatible()


@pytest.mark.slow
def test_dlt_init_project_runs_against_the_sandbox(sandbox_factory, tmp_path):
    server = sandbox_factory(seed=5, size=60, shape="desk", auth="api_key_query")
    env = isolated_env(tmp_path / "user")
    repository = snapshot_repository(tmp_path / "verified-sources", env)
    project = tmp_path / "project"
    project.mkdir()

    init = ["init", "support_api", "duckdb", "--location", str(repository)]
    run([str(DLT_CLI), "--non-interactive", *init], project, env)

    script = (project / "support_api_pipeline.py").read_text()
    assert "from support_api import support_api" in script
    assert (project / "support_api" / "__init__.py").exists()
    assert (project / "support_api" / "README.md").exists()
    requirements = (project / "requirements.txt").read_text()
    assert "dlt[duckdb" in requirements
    config = tomlkit.parse((project / ".dlt" / "config.toml").read_text())
    assert "base_url" in config["sources"]["support_api"]
    secrets = tomlkit.parse((project / ".dlt" / "secrets.toml").read_text())
    assert "credentials" in secrets["sources"]["support_api"]

    # what the README tells a user: the API root in config.toml, one credential kind in
    # secrets.toml in place of the scaffolded placeholders
    config["sources"]["support_api"]["base_url"] = server.url
    (project / ".dlt" / "config.toml").write_text(tomlkit.dumps(config))
    secrets["sources"]["support_api"]["credentials"] = {
        "api_key": server.secrets.api_key,
        "name": "api_key",
        "location": "query",
    }
    (project / ".dlt" / "secrets.toml").write_text(tomlkit.dumps(secrets))

    output = run([sys.executable, "support_api_pipeline.py"], project, env).stdout
    assert server.secrets.api_key not in output

    with duckdb.connect(str(project / "support_api.duckdb"), read_only=True) as db:
        for table in TABLES:
            query = f"SELECT count(*), count(DISTINCT id) FROM support_desk.{table}"  # noqa: S608 - fixed table names
            row = db.execute(query).fetchone()
            assert row == (server.dataset.count(table),) * 2, table

    info = run([str(DLT_CLI), "pipeline", "support_api", "info"], project, env).stdout
    assert "dataset_name: support_desk" in info
    assert "tickets with 1 table(s)" in info

    # the seed examples come along: one runs as its docstring says, with the key the seed reads
    examples = sorted(path.name for path in (project / "support_api" / "examples").glob("seed_*"))
    assert len(examples) == 5, examples
    seed = sandbox_factory(seed=6, size=60, shape="seed002", auth="api_key_query")
    config["sources"]["support_api"]["base_url"] = seed.url
    (project / ".dlt" / "config.toml").write_text(tomlkit.dumps(config))
    secrets["api_key"] = seed.secrets.api_key
    (project / ".dlt" / "secrets.toml").write_text(tomlkit.dumps(secrets))
    example = ["-m", "support_api.examples.seed_002_offset_api_key_query"]
    output = run([sys.executable, *example], project, env).stdout
    assert seed.secrets.api_key not in output
    with duckdb.connect(str(project / "support_api_seed_002.duckdb"), read_only=True) as db:
        query = "SELECT count(*), count(DISTINCT id) FROM seed_002.customer_support_data"
        assert db.execute(query).fetchone() == (seed.dataset.count("customers"),) * 2
