"""A deterministic fake customer-support API served on 127.0.0.1.

`generate_dataset(seed, size)` builds the data lazily; `SandboxServer` serves it with a choice
of pagination styles, auth modes and faults. Run `python -m tests.sandbox --help` for the
command line, and see `tests.sandbox.fixtures` for the pytest fixtures.

Only the standard library is imported here, so the demo and benchmarks can use the sandbox
without test dependencies.
"""

from tests.sandbox.data import (
    SECRET_PREFIXES,
    TABLES,
    Dataset,
    MutationResult,
    Row,
    RowKey,
    SandboxSecrets,
    Window,
    default_table_sizes,
    format_timestamp,
    generate_dataset,
    parse_timestamp,
    sandbox_secrets,
)
from tests.sandbox.server import (
    ADMIN_PREFIX,
    DEFAULT_FAULT_KINDS,
    SHAPES,
    TOKEN_PATHS,
    AuthMode,
    FakeClock,
    Fault,
    FaultKind,
    PaginatorKind,
    RequestRecord,
    Route,
    SandboxServer,
)

__all__ = [
    "ADMIN_PREFIX",
    "DEFAULT_FAULT_KINDS",
    "SECRET_PREFIXES",
    "SHAPES",
    "TABLES",
    "TOKEN_PATHS",
    "AuthMode",
    "Dataset",
    "FakeClock",
    "Fault",
    "FaultKind",
    "MutationResult",
    "PaginatorKind",
    "RequestRecord",
    "Route",
    "Row",
    "RowKey",
    "SandboxSecrets",
    "SandboxServer",
    "Window",
    "default_table_sizes",
    "format_timestamp",
    "generate_dataset",
    "parse_timestamp",
    "sandbox_secrets",
]
