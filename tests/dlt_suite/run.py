"""Runs dlt's own rest_api test suite against `support_api_from_config` and prints the counts.

    python tests/dlt_suite/run.py /path/to/extracted [--plain] [--workdir DIR] [-- PYTEST_ARGS]

`/path/to/extracted` holds dlt's `tests` folder (and its `pyproject.toml`, whose pytest
settings are used), as in the dlt-hub/dlt repository. The folder is copied to a scratch
directory, where dlt's conftest writes its `_storage`, so the extracted one stays untouched.
The interpreter running this script needs dlt, `pytest<8`, pytest-mock, requests-mock and
pytest-timeout (`nox -s dlt_suite` installs them). `support_api_parity_plugin.py` (next to
this file) swaps dlt's `rest_api_source` for ours and skips the tests that need the internet;
`--plain` keeps dlt's own, as a baseline.

Prints `dlt_suite: N passed, N failed, N skipped` last and exits with pytest's status.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
SUITE = "tests/sources/rest_api"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extracted", type=Path, help="folder holding dlt's tests/")
    parser.add_argument(
        "--workdir", type=Path, help="scratch folder, kept (default: a temp one, removed after)"
    )
    parser.add_argument("--plain", action="store_true", help="run against plain dlt (baseline)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    return parser.parse_args(argv)


def _prepare(extracted: Path, workdir: Path) -> None:
    """Copies dlt's tests and pytest settings into `workdir` (replacing an earlier copy)."""
    if not (extracted / SUITE).is_dir():
        sys.exit(f"{extracted} holds no {SUITE}: pass the folder with dlt's tests/ in it")
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("tests", "_storage"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "_storage")
    shutil.copytree(extracted / "tests", workdir / "tests", ignore=ignore)
    if (extracted / "pyproject.toml").is_file():
        shutil.copy2(extracted / "pyproject.toml", workdir / "pyproject.toml")


def counts(output: str) -> dict[str, int]:
    """The outcome counts of pytest's closing line (`3 failed, 360 passed in 2.1s`)."""
    lines = [line for line in output.splitlines() if re.search(r"\d+ \w+.* in [\d.]+s", line)]
    found = dict.fromkeys(OUTCOMES, 0)
    for number, outcome in re.findall(r"(\d+) (\w+)", lines[-1] if lines else ""):
        key = "error" if outcome == "errors" else outcome
        if key in found:
            found[key] = int(number)
    return found


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    extracted = args.extracted.resolve()
    scratch = args.workdir is None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dlt_suite_"))).resolve()
    try:
        return _run(args, extracted, workdir)
    finally:
        if scratch:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, extracted: Path, workdir: Path) -> int:
    _prepare(extracted, workdir)
    env = dict(os.environ)
    # our plugin and the package as `dlt init` lays it out (`support_api`); the project root
    # stays off the path: `tests` there is dlt's
    paths = [str(HERE), str(PROJECT / "sources"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    if args.plain:
        env["SUPPORT_API_DLT_SUITE_PLAIN"] = "1"
    command = [
        sys.executable,
        "-m",
        "pytest",
        SUITE,
        "-p",
        "support_api_parity_plugin",
        "-p",
        "no:cacheprovider",
        # dlt's addopts without --showlocals and --durations (pages of output per failure)
        "-o",
        "addopts=-p no:xdist -m 'not rfam'",
        "-o",
        "log_cli=false",
        "--timeout=300",
        "-q",
        "--tb=short",
        "-rfEs",
        *args.pytest_args,
    ]
    print(f"dlt_suite: in {workdir}: {' '.join(command)}", flush=True)
    process = subprocess.run(
        command, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, check=False
    )
    sys.stdout.write(process.stdout)
    found = counts(process.stdout)
    against = "plain dlt" if args.plain else "support_api"
    summary = ", ".join(f"{found[o]} {o}" for o in OUTCOMES if found[o] or o in OUTCOMES[:3])
    print(f"dlt_suite ({against}): {summary}", flush=True)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
