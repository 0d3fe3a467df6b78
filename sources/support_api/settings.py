"""Defaults and the resource catalogue of the support_api source.

Each resource is one typed record (`EndpointSpec`): what it is called, where it lives, how its
pages are read and which field drives incremental loading. Every field can be overridden per
resource in `.dlt/config.toml` (`[sources.support_api.endpoints.<name>]`) or env vars
(`SOURCES__SUPPORT_API__ENDPOINTS__<NAME>__<FIELD>`) without code changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

DEFAULT_START_DATE: Final = "2000-01-01T00:00:00Z"
"""Earliest `updated_at` loaded on a first run, unless `start_date` says otherwise."""

DEFAULT_PAGE_SIZE: Final = 100
"""Rows asked for per page."""

MAX_PAGE_SIZE: Final = 10_000
"""Largest page size accepted in config: beyond this a typo is more likely than intent."""

DEFAULT_CONCURRENCY: Final = 16
"""Most requests in flight at once per cursor-paged resource, each walking a time window.

Windows are added only while pages arrive slower than dlt takes them, so on a fast API fewer
run; 16 covers about 20 ms of latency per page on a 2-core machine."""

MAX_CONCURRENCY: Final = 64
"""Largest `concurrency` accepted in config."""

DEFAULT_LOOKBACK_SECONDS: Final = 0
"""Seconds subtracted from the last seen cursor before it is sent as `updated_since`."""

DEFAULT_SETTLE_SECONDS: Final = 60
"""Rows updated this recently are left for the next run (`settle.py`), so that a change
stamped when its transaction started but shown only when it committed is never passed by the
cursor. It must exceed the API's delay from stamp to visibility (commit, replica lag) plus
the clock skew between the API and the sync, which only the API shows; a minute is what
vendors that document the same cure leave out of their incremental exports. In the sandbox
scenario of `tests/measure_settle.py` (changes shown up to 7 sandbox seconds late) no margin
lost 55 to 65 rows in three tries and every margin from 2 seconds lost none. It costs
freshness only: a run loads what changed up to a minute before it started, and reads nothing
twice."""

MAX_SETTLE_SECONDS: Final = 86_400
"""Largest `settle_seconds` accepted: a longer margin is more likely milliseconds by mistake."""

DEFAULT_RETRY_STATUS_CODES: Final = (429, 500, 502, 503, 504)
"""Statuses retried with backoff. 401, 403 and 404 fail at once."""

DEFAULT_MAX_RETRIES: Final = 3
"""Retries after the first attempt."""

DEFAULT_BACKOFF_FACTOR: Final = 2.0
"""Backoff waits are 2, 4, 8 seconds for a factor of 2."""

DEFAULT_MAX_RETRY_DELAY: Final = 60.0
"""Cap in seconds on one wait, `Retry-After` included."""

DEFAULT_REQUEST_TIMEOUT: Final = 60.0
"""Connect and read timeout of a request, in seconds."""

DEFAULT_CURSOR_FIELD: Final = "updated_at"
DEFAULT_UPDATED_SINCE_PARAM: Final = "updated_since"
DEFAULT_UPDATED_BEFORE_PARAM: Final = "updated_before"

ON_DELETE_KEEP_FLAGGED: Final = "keep_flagged"
"""Deleted records are loaded like any other record, with their delete marker (the default)."""

ON_DELETE_HARD_DELETE: Final = "hard_delete"
"""Deleted records are removed from the destination (dlt's `hard_delete` column hint)."""

ON_DELETE_CHOICES: Final = (ON_DELETE_KEEP_FLAGGED, ON_DELETE_HARD_DELETE)
"""Accepted values of an endpoint's `on_delete`."""

DEFAULT_ON_DELETE: Final = ON_DELETE_KEEP_FLAGGED
"""Nothing is deleted in the destination unless a resource sets `on_delete = "hard_delete"`."""

DELETED_COLUMN: Final = "is_deleted"
"""Boolean column computed from `deleted_field == deleted_value` for hard deletes on a status."""

DEFAULT_PAGINATOR: Final[Mapping[str, Any]] = MappingProxyType(
    {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}
)
"""Pagination of the catalogue endpoints; the page size is added from `page_size`."""

_TIMESTAMP: Final[Mapping[str, Any]] = MappingProxyType(
    {"data_type": "timestamp", "nullable": True}
)
_JSON: Final[Mapping[str, Any]] = MappingProxyType({"data_type": "json", "nullable": True})
_ID: Final[Mapping[str, Any]] = MappingProxyType({"data_type": "bigint", "nullable": False})


def _hints(**columns: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({"id": _ID, "created_at": _TIMESTAMP, **columns})


@dataclass(frozen=True)
class EndpointSpec:
    """One resource of the catalogue.

    Attributes:
        name: Resource and table name.
        path: Path relative to `base_url`.
        data_selector: JSON path of the list of records in a response.
        primary_key: Column(s) the table merges on.
        cursor_field: Field holding the record's last-updated timestamp.
        updated_since_param: Query parameter the API filters `cursor_field >= value` with;
            None when the API has no such filter (every run then reads everything and dlt
            filters client side).
        updated_before_param: Query parameter for the exclusive upper bound used with
            `end_date`; None when the API has none.
        paginator: Paginator config, as in a rest_api `paginator` block.
        columns: Column hints. Timestamps are typed, nested lists and objects whose keys vary
            are kept as JSON columns (one row per record, no child tables).
        write_disposition: How rows are written.
        deleted_field: Field the API marks deleted records with: a flag (`deleted`; true, or
            for a non-boolean field any non-null value, means deleted) or, with
            `deleted_value`, a status field. None when the API marks no deleted records.
        deleted_value: Value of `deleted_field` (compared as text) that means deleted, e.g.
            `deleted` for a `status` field. None when `deleted_field` is a flag.
        on_delete: `keep_flagged` loads deleted records like the others, marker included;
            `hard_delete` removes them from the destination (needs `merge`).
        settle_seconds: This resource's settle margin; None takes the source's
            `settle_seconds`.
        params: Static query parameters sent with every request (e.g. `{"include": "users"}`).
        headers: Request headers of this endpoint.
        method: `GET`, or `POST` for search endpoints that take `json`.
        json: JSON body of a `POST` (dlt's placeholders, e.g. `{incremental.start_value}`).
        response_actions: dlt's response actions (e.g. ignore a 404).
    """

    name: str
    path: str
    data_selector: str = "data"
    primary_key: str = "id"
    cursor_field: str = DEFAULT_CURSOR_FIELD
    updated_since_param: str | None = DEFAULT_UPDATED_SINCE_PARAM
    updated_before_param: str | None = DEFAULT_UPDATED_BEFORE_PARAM
    paginator: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_PAGINATOR)
    columns: Mapping[str, Mapping[str, Any]] = field(default_factory=_hints)
    write_disposition: str = "merge"
    deleted_field: str | None = "deleted"
    deleted_value: str | None = None
    on_delete: str = DEFAULT_ON_DELETE
    settle_seconds: int | None = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    method: str | None = None
    json: Mapping[str, Any] | None = None
    response_actions: list[Mapping[str, Any]] | None = None


CATALOGUE: Final[tuple[EndpointSpec, ...]] = (
    EndpointSpec(
        name="tickets",
        path="/v1/tickets",
        columns=_hints(
            due_at=_TIMESTAMP,
            tags=_JSON,
            custom_fields=_JSON,
            assignee_id={"data_type": "bigint", "nullable": True},
            priority={"data_type": "text", "nullable": True},
        ),
        deleted_field="status",
        deleted_value="deleted",
    ),
    EndpointSpec(name="ticket_comments", path="/v1/ticket_comments"),
    EndpointSpec(
        name="organizations",
        path="/v1/organizations",
        columns=_hints(domain_names=_JSON, organization_fields=_JSON),
    ),
    EndpointSpec(name="agents", path="/v1/agents"),
    EndpointSpec(name="groups", path="/v1/groups"),
    EndpointSpec(name="brands", path="/v1/brands"),
    EndpointSpec(name="customers", path="/v1/customers"),
)
"""The default resources, loaded in this order."""

CATALOGUE_BY_NAME: Final[Mapping[str, EndpointSpec]] = MappingProxyType(
    {spec.name: spec for spec in CATALOGUE}
)
