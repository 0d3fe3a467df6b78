"""What one measured run does: the spec the parent writes and `run_one` reads.

A spec is plain JSON so the child process needs nothing from the parent but a file path.
Every path a run writes to lives under its `run_dir`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal, cast, get_args

Variant = Literal[
    "plain_default", "plain_jsonl", "plain_parallelized", "support_api", "bare_threads"
]
"""Who loads: plain dlt `rest_api_source` with default settings, the same with
`loader_file_format="jsonl"`, the same with `parallelized: True` on its dependent resource,
support_api with the defaults it ships, or no dlt at all: a bare threaded HTTP client that
reads the same pages (the server's floor; see `tests.bench.bare`)."""

VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)

Shape = Literal["desk", "seed001", "desk_nested"]
"""Sandbox route presets the benchmarks use: cursor paging under `data` (`desk`), offset
paging without a total under `tickets` (`seed001`), or `desk` plus each ticket's comments at
`/v1/tickets/{ticket_id}/comments` (`desk_nested`)."""

SHAPES: Final[tuple[Shape, ...]] = get_args(Shape)

PAGE_SIZE: Final = 100
DATASET_NAME: Final = "support_desk"
DB_FILE: Final = "destination.duckdb"
PIPELINES_DIR: Final = "pipelines"
SPEC_FILE: Final = "spec.json"
RESULT_FILE: Final = "result.json"


@dataclass(frozen=True)
class RunSpec:
    """One pipeline run in a fresh process.

    Attributes:
        variant: Who loads.
        shape: Sandbox route preset the server was started with.
        base_url: Sandbox root, `http://127.0.0.1:<port>`.
        seed: Sandbox seed; the API key is derived from it.
        resources: Tables to load, in order.
        incremental: Plain variants only: send `updated_since` from a dlt incremental on
            `updated_at` (support_api is always incremental).
        run_dir: Folder holding the pipelines dir, the DuckDB file and the result.
        page_size: Rows per page asked for.
        duckdb_memory_limit: DuckDB's `memory_limit` (e.g. `64MB`); None keeps DuckDB's
            default (80% of RAM), up to which it keeps loaded tables cached in memory.
        max_table_nesting: Set on the source (None: dlt's default).
        child_page_size: Rows per page asked for on a dependent endpoint (`desk_nested`'s
            comments); None: `page_size`.
    """

    variant: Variant
    shape: Shape
    base_url: str
    seed: int
    resources: tuple[str, ...]
    incremental: bool
    run_dir: str
    page_size: int = PAGE_SIZE
    duckdb_memory_limit: str | None = None
    max_table_nesting: int | None = None
    child_page_size: int | None = None

    @property
    def pipeline_name(self) -> str:
        """Pipeline name: one per variant, so plain and support_api state never mix."""
        return f"bench_{self.variant}"

    @property
    def db_path(self) -> Path:
        """The DuckDB file of this run."""
        return Path(self.run_dir) / DB_FILE

    @property
    def pipelines_dir(self) -> Path:
        """The dlt pipelines dir of this run."""
        return Path(self.run_dir) / PIPELINES_DIR

    @property
    def result_path(self) -> Path:
        """Where the child writes its JSON result."""
        return Path(self.run_dir) / RESULT_FILE

    def dump(self) -> Path:
        """Writes the spec into its run dir.

        Returns:
            The spec file.
        """
        path = Path(self.run_dir) / SPEC_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        """Reads a spec written by `dump`.

        Args:
            path: The spec file.

        Returns:
            The spec.

        Raises:
            ValueError: If the variant or shape is unknown.
        """
        raw = json.loads(path.read_text())
        if raw["variant"] not in VARIANTS or raw["shape"] not in SHAPES:
            raise ValueError(f"unknown variant or shape in {path}")
        return cls(
            variant=cast("Variant", raw["variant"]),
            shape=cast("Shape", raw["shape"]),
            base_url=str(raw["base_url"]),
            seed=int(raw["seed"]),
            resources=tuple(str(name) for name in raw["resources"]),
            incremental=bool(raw["incremental"]),
            run_dir=str(raw["run_dir"]),
            page_size=int(raw["page_size"]),
            duckdb_memory_limit=raw.get("duckdb_memory_limit"),
            max_table_nesting=raw.get("max_table_nesting"),
            child_page_size=raw.get("child_page_size"),
        )
