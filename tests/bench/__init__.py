"""Benchmarks of support_api against plain dlt `rest_api_source` on the loopback sandbox.

`python -m tests.bench --workdir DIR` (or `nox -s bench`) starts a sandbox process per case,
runs every measured pipeline in a fresh subprocess (`python -m tests.bench.run_one SPEC`) so
its peak RSS is its own, checks the loaded rows and ids against the sandbox dataset, prints a
table with the targets and writes `DIR/bench-results.json`. See `tests/bench/README.md`.
"""
