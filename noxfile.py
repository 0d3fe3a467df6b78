"""Sessions for support_api: lint, tests, demo, cassette recording and benchmarks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
RUNTIME_DEPS: list[str] = PYPROJECT["project"]["dependencies"]


def _install(session: nox.Session, *groups: str) -> None:
    deps = list(RUNTIME_DEPS)
    for group in groups:
        deps.extend(nox.project.dependency_groups(PYPROJECT, group))
    session.install(*deps)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Run ruff check, ruff format --check and mypy."""
    _install(session, "test", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


TEST_OPTIONS = ["-n", "auto", "--dist", "worksteal", "--durations=25"]
"""One pytest worker per core (pytest-xdist; tests that wait on subprocesses or sockets
leave room, so an idle worker takes the next test), and the 25 slowest tests printed, so
the suite's time budget stays visible. Options in `nox -s tests -- ...` come after these and
win (`-n 0` runs in one process)."""


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against the loopback sandbox and replayed cassettes."""
    _install(session, "test")
    session.run("pytest", *TEST_OPTIONS, *session.posargs)


DLT_MINORS = ("1.29", "1.30", "1.31")
"""The dlt minors `requirements.txt` accepts; `compat` tests each."""

COMPAT_TESTS = (
    "tests/test_seeds.py",
    "tests/test_source.py",
    "tests/test_plain_dlt_parity.py",
    "tests/test_row_path_parity.py",
    "tests/test_state_stability.py",
    "tests/test_credentials_origin.py",
    "tests/test_arrow_pages.py",
    "tests/test_dlt_init.py",
    "tests/test_settle.py",
    "tests/test_fan_out.py",
)
"""The seed and end-to-end source tests, which touch every use of dlt's API."""


@nox.session(python=PYTHON, default=False)
@nox.parametrize("dlt_minor", DLT_MINORS)
def compat(session: nox.Session, dlt_minor: str) -> None:
    """Run the seed and end-to-end source tests on each supported dlt minor."""
    _install(session, "test")
    session.install(f"dlt[duckdb,parquet]=={dlt_minor}.*")
    session.run("python", "-c", "import dlt; print('dlt', dlt.__version__)")
    session.run("pytest", "-n", "auto", "-p", "no:cacheprovider", *COMPAT_TESTS, *session.posargs)


DLT_SUITE_DEPS = ("pytest<8", "pytest-mock", "requests-mock", "pytest-timeout")
"""What dlt's own test suite needs besides dlt (its pytest settings ask for pytest 7)."""


@nox.session(python=PYTHON, default=False)
def dlt_suite(session: nox.Session) -> None:
    """Run dlt's rest_api tests against support_api_from_config: `-- /path/to/extracted`.

    The folder holds dlt's `tests` (and `pyproject.toml`), as in the dlt repository; more
    arguments after another `--` go to pytest. Needs no network (the tests that do are
    skipped); not run in CI, which has no copy of dlt's tests.
    """
    if not session.posargs:
        session.error("usage: nox -s dlt_suite -- /path/to/extracted [-- PYTEST_ARGS]")
    _install(session)
    session.install(*DLT_SUITE_DEPS)
    session.run("python", "-c", "import dlt; print('dlt', dlt.__version__)")
    session.run("python", "tests/dlt_suite/run.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def record(session: nox.Session) -> None:
    """Re-record every VCR cassette against a fresh sandbox."""
    _install(session, "test")
    suite = "tests/cassette_tests"
    before = {path: path.stat().st_mtime_ns for path in (ROOT / suite).rglob("cassettes/*/*.yaml")}
    session.run("pytest", "-m", "vcr", "--record-mode=rewrite", suite, *session.posargs)
    if not session.posargs:
        # every test rewrote its cassette: one left untouched belongs to a renamed or removed test
        for path, mtime in before.items():
            if path.exists() and path.stat().st_mtime_ns == mtime:
                session.log(f"removing the stale cassette {path.relative_to(ROOT)}")
                path.unlink()
    # then replay what was just recorded, network blocked, and scan it for secrets
    session.run("pytest", suite, *session.posargs)


@nox.session(python=PYTHON, default=False)
def demo(session: nox.Session) -> None:
    """Start the sandbox API and sync it into a local DuckDB file twice (full, then incremental)."""
    _install(session)
    workdir = Path(os.environ.get("SUPPORT_API_DEMO_DIR", ROOT / "demo_data"))
    workdir.mkdir(exist_ok=True)
    session.run("python", "-m", "tests.demo", str(workdir), *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark support_api against plain dlt rest_api_source on the same sandbox data."""
    _install(session)
    out = Path(tempfile.gettempdir()) / "support_api_bench"
    session.run("python", "-m", "tests.bench", "--workdir", str(out), *session.posargs)
