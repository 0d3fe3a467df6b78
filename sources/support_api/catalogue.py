"""Turns the catalogue, the source arguments and per-endpoint overrides into a seed-style dict.

The `support_api` source and `support_api_from_config` then share one path: this dict goes
through `config.normalize_config` and `resources.build_resources` like any seed config.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Final

import pendulum
from dlt.common.time import ensure_pendulum_datetime
from requests.auth import AuthBase

from .arrow_pages import is_arrow_table, mark_in_table
from .config import SETTLE_KEY, check_settle_seconds, validate_paginator
from .errors import ConfigError
from .http_policy import RetryPolicy
from .settings import (
    CATALOGUE,
    CATALOGUE_BY_NAME,
    DEFAULT_PAGE_SIZE,
    DEFAULT_SETTLE_SECONDS,
    DELETED_COLUMN,
    MAX_CONCURRENCY,
    MAX_PAGE_SIZE,
    ON_DELETE_CHOICES,
    ON_DELETE_HARD_DELETE,
    EndpointSpec,
)
from .windows import WindowPlan

OVERRIDABLE = frozenset(
    f.name for f in dataclasses.fields(EndpointSpec) if f.name not in ("name", "columns")
) | {"error_handler"}
"""Keys accepted under `[sources.support_api.endpoints.<resource>]`."""

_NULLABLE_PARAMS = ("updated_since_param", "updated_before_param", "deleted_field", "deleted_value")


class MarkDeleted:
    """Processing step: sets the boolean `DELETED_COLUMN` from a status field.

    dlt's `hard_delete` hint deletes on a boolean true (or any non-null value of another type),
    so a status such as `status = "deleted"` is turned into a boolean column first.
    """

    takes_arrow: ClassVar[bool] = True
    """Handles arrow tables: the resource's batches stay tables with this step."""

    def __init__(self, field: str, value: str) -> None:
        """Remembers which field and value mean deleted.

        Args:
            field: The status field.
            value: The value (compared as text) that means deleted.
        """
        self.field = field
        self.value = value

    def __repr__(self) -> str:
        """Names the rule."""
        return f"MarkDeleted({self.field!r} == {self.value!r})"

    def __call__(self, item: Any) -> Any:
        """Adds `DELETED_COLUMN` to a record or an arrow table (other items pass through)."""
        if isinstance(item, dict):
            marker = item.get(self.field)
            item[DELETED_COLUMN] = marker is not None and str(marker) == self.value
        elif is_arrow_table(item):
            return mark_in_table(item, self.field, self.value, DELETED_COLUMN, self)
        return item


class CursorToDatetime:
    """Processing step: parses a record's cursor field into a datetime.

    dlt joins an external scheduler's interval only on a datetime-typed cursor, so with
    `allow_external_schedulers` the cursor is compared as a datetime instead of as text.
    """

    def __init__(self, field: str) -> None:
        """Remembers which field to parse.

        Args:
            field: The cursor field.
        """
        self.field = field

    def __call__(self, item: Any) -> Any:
        """Parses the cursor value of one record in place."""
        if isinstance(item, dict) and isinstance(value := item.get(self.field), str):
            item[self.field] = ensure_pendulum_datetime(value)
        return item


def format_cursor(value: Any) -> str:
    """Formats a datetime cursor for the API's `updated_since`/`updated_before` parameters."""
    return str(ensure_pendulum_datetime(value).in_tz("UTC").format("YYYY-MM-DDTHH:mm:ss[Z]"))


def latest_cursor(values: Sequence[Any]) -> Any:
    """`max` over cursor values that may mix datetimes and text (state saved by a text run)."""
    return max(ensure_pendulum_datetime(v) for v in values if v is not None)


def _check_int(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got `{value!r}`.")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"expected an integer <= {maximum}, got `{value!r}`.")
    return value


def _checked_override(key: str, value: Any, key_path: str) -> Any:
    """Checks one per-endpoint override and returns the value to use."""
    if key not in OVERRIDABLE:
        raise ConfigError(key_path, "unknown key.", OVERRIDABLE)
    if key in ("paginator", "error_handler"):
        return value
    if key in _REQUEST_KNOBS:
        return _checked_request_knob(key, value, key_path)
    if key == SETTLE_KEY:
        return check_settle_seconds(value, key_path)
    if key in _NULLABLE_PARAMS and value in ("", None):
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(key_path, f"expected a non-empty string, got `{value!r}`.")
    if key == "on_delete" and value not in ON_DELETE_CHOICES:
        raise ConfigError(key_path, f"unknown value `{value}`.", ON_DELETE_CHOICES)
    return value


_REQUEST_KNOBS: Final = frozenset({"params", "headers", "method", "json", "response_actions"})
"""Overrides that shape the request (and its response handling) as in a rest_api endpoint."""

_METHODS: Final = ("GET", "POST")


def _checked_request_knob(key: str, value: Any, key_path: str) -> Any:
    """Checks a request override's type; dlt checks the values again with the endpoint."""
    if key == "method":
        if not isinstance(value, str) or value.upper() not in _METHODS:
            raise ConfigError(key_path, f"expected GET or POST, got `{value!r}`.", _METHODS)
        return value.upper()
    if key == "response_actions":
        if not isinstance(value, list) or not all(isinstance(a, Mapping) for a in value):
            raise ConfigError(
                key_path,
                'expected a list of tables such as `{status_code = 404, action = "ignore"}`,'
                f" got `{value!r}`.",
            )
        return [dict(action) for action in value]
    if not isinstance(value, Mapping):
        raise ConfigError(key_path, f"expected a table, got `{type(value).__name__}`.")
    if key == "headers" and not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(key_path, "expected header values as strings.")
    if key == "params":
        for name, item in value.items():
            if not isinstance(item, str | int | float | bool) or isinstance(item, bool):
                raise ConfigError(
                    f"{key_path}.{name}", f"expected a string or a number, got `{item!r}`."
                )
    return dict(value)


def _selected_names(names: Any) -> list[str]:
    """Checks `resources`: None (all), a list of catalogue names, or a comma-separated string."""
    if names is None:
        return [spec.name for spec in CATALOGUE]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            "resources", f"expected a list of resource names, got `{names!r}`.", CATALOGUE_BY_NAME
        )
    if not names:
        raise ConfigError("resources", "no resource selected.", CATALOGUE_BY_NAME)
    for name in names:
        if name not in CATALOGUE_BY_NAME:
            raise ConfigError("resources", f"unknown resource `{name}`.", CATALOGUE_BY_NAME)
    return list(names)


def _check_timestamp(value: Any, key: str) -> pendulum.DateTime | None:
    """Checks that a `start_date`/`end_date` is an ISO-8601 timestamp (or None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return pendulum.instance(value)
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            parsed = pendulum.parse(value, exact=True)
            if isinstance(parsed, pendulum.DateTime):
                return parsed
            if isinstance(parsed, pendulum.Date):
                return pendulum.datetime(parsed.year, parsed.month, parsed.day)
    raise ConfigError(
        key, f"expected an ISO-8601 timestamp such as `2024-01-31T00:00:00Z`, got `{value!r}`."
    )


def select_specs(
    names: Sequence[str] | None, overrides: Mapping[str, Any] | None
) -> list[tuple[EndpointSpec, Mapping[str, Any] | None]]:
    """Picks the catalogue entries to load and applies their overrides.

    Args:
        names: Resource names to load, or None for all.
        overrides: `endpoints` config: resource name -> overridden fields.

    Returns:
        Each selected spec with its `error_handler` override (or None).

    Raises:
        ConfigError: On an unknown resource, override key or value type.
    """
    selected = _selected_names(names)
    overrides = overrides or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError("endpoints", f"expected a table, got `{type(overrides).__name__}`.")
    for name, entry in overrides.items():
        if name not in CATALOGUE_BY_NAME:
            raise ConfigError(f"endpoints.{name}", "no such resource.", CATALOGUE_BY_NAME)
        if entry is not None and not isinstance(entry, Mapping):
            raise ConfigError(
                f"endpoints.{name}", f"expected a table of overrides, got `{type(entry).__name__}`."
            )
    result = []
    for name in selected:
        spec = CATALOGUE_BY_NAME[name]
        override = dict(overrides.get(name) or {})
        for key, value in override.items():
            override[key] = _checked_override(key, value, f"endpoints.{name}.{key}")
        error_handler = override.pop("error_handler", None)
        if "paginator" in override and isinstance(override["paginator"], str):
            override["paginator"] = {"type": override["paginator"]}
        result.append((dataclasses.replace(spec, **override), error_handler))
    return result


def check_concurrency(value: Any) -> int:
    """Checks a `concurrency` setting: an integer from 1 to `MAX_CONCURRENCY`.

    Args:
        value: The configured value.

    Returns:
        The value.

    Raises:
        ConfigError: When it is not such an integer.
    """
    return _check_int(value, "concurrency", 1, MAX_CONCURRENCY)


def window_plans(
    names: Sequence[str] | None,
    overrides: Mapping[str, Any] | None,
    concurrency: int,
    allow_external_schedulers: bool = False,
) -> dict[str, WindowPlan]:
    """Which selected resources are read in concurrent time windows, and how.

    A resource qualifies when its pages are cursor-paged (offset and page-number endpoints
    fetch pages ahead instead) and its API filters on the updated timestamp both ways.

    Args:
        names: Resources to load, or None for all.
        overrides: Per-endpoint overrides from `endpoints`.
        concurrency: Walks (requests in flight) at once per resource; 1 turns windows off.
        allow_external_schedulers: Cursors are parsed into datetimes row by row in this mode,
            so batches stay records instead of becoming arrow tables.

    Returns:
        Window plans by resource name.

    Raises:
        ConfigError: When `concurrency` is not a positive integer.
    """
    check_concurrency(concurrency)
    plans = {}
    for spec, _ in select_specs(names, overrides):
        paginator = spec.paginator
        kind = paginator.get("type") if isinstance(paginator, Mapping) else None
        if kind == "cursor" and spec.updated_since_param and spec.updated_before_param:
            plans[spec.name] = WindowPlan(
                cursor_field=spec.cursor_field,
                since_param=spec.updated_since_param,
                before_param=spec.updated_before_param,
                concurrency=concurrency,
                arrow=not allow_external_schedulers,
            )
    return plans


def catalogue_config(
    base_url: str,
    credentials: AuthBase | None,
    names: Sequence[str] | None,
    start_date: str | None,
    end_date: str | None,
    page_size: int | None,
    lookback_seconds: int,
    overrides: Mapping[str, Any] | None,
    allow_external_schedulers: bool = False,
    settle_seconds: int = DEFAULT_SETTLE_SECONDS,
) -> dict[str, Any]:
    """Writes the selected catalogue resources as a seed-style config dict.

    Args:
        base_url: API root.
        credentials: Resolved auth object.
        names: Resources to load, or None for all.
        start_date: Earliest cursor value to load (first run).
        end_date: Exclusive upper bound of the cursor, for backfill windows.
        page_size: Rows per page; None takes `DEFAULT_PAGE_SIZE` where a paginator sends one.
        lookback_seconds: Seconds subtracted from the last cursor value on incremental runs.
        overrides: Per-endpoint overrides from `endpoints`.
        allow_external_schedulers: Take the window from an external scheduler (Airflow,
            `DLT_INTERVAL_START`/`DLT_INTERVAL_END`); cursors are then compared as datetimes.
        settle_seconds: Rows updated this recently are left for the next run, unless the
            endpoint sets its own; not with `end_date` or an external scheduler (no state).

    Returns:
        A config accepted by `support_api_from_config`.
    """
    size = (
        DEFAULT_PAGE_SIZE
        if page_size is None
        else _check_int(page_size, "page_size", 1, MAX_PAGE_SIZE)
    )
    size_key = None if page_size is None else "page_size"
    check_settle_seconds(settle_seconds, SETTLE_KEY)
    _check_int(lookback_seconds, "lookback_seconds", 0)
    start = _check_timestamp(start_date, "start_date")
    end = _check_timestamp(end_date, "end_date")
    if start is not None and end is not None and end <= start:
        raise ConfigError("end_date", f"`{end_date}` is not later than start_date `{start_date}`.")
    resources = []
    for spec, error_handler in select_specs(names, overrides):
        key_path = f"endpoints.{spec.name}"
        paginator = validate_paginator(spec.paginator, f"{key_path}.paginator", size, size_key)
        if error_handler is not None:
            RetryPolicy.from_config(error_handler, f"{key_path}.error_handler")
        incremental: dict[str, Any] = {
            "cursor_path": spec.cursor_field,
            "initial_value": start_date,
            "start_param": spec.updated_since_param,
        }
        if end_date is not None:
            incremental["end_value"] = end_date
            incremental["end_param"] = spec.updated_before_param
        if lookback_seconds:
            incremental["lag"] = lookback_seconds
        # a cursor kept in state stays behind `now - settle` (`settle.py`), a bound sent as the
        # "updated before" parameter where the endpoint has one; a window keeps no state
        settle = settle_seconds if spec.settle_seconds is None else spec.settle_seconds
        if end_date is not None or allow_external_schedulers:
            settle = 0
        incremental[SETTLE_KEY] = settle
        if settle and spec.updated_before_param:
            incremental["end_param"] = spec.updated_before_param
        steps: list[dict[str, Any]] = []
        if allow_external_schedulers:
            incremental |= {
                "initial_value": start,
                "end_value": end,
                "end_param": spec.updated_before_param,
                "allow_external_schedulers": True,
                "convert": format_cursor,
                "last_value_func": latest_cursor,
            }
            steps.append({"map": CursorToDatetime(spec.cursor_field)})
        endpoint: dict[str, Any] = {
            "path": spec.path,
            "data_selector": spec.data_selector,
            "paginator": paginator,
            "incremental": incremental,
        }
        for knob in _REQUEST_KNOBS:
            if (value := getattr(spec, knob)) is not None:
                endpoint[knob] = value
        if error_handler is not None:
            endpoint["error_handler"] = error_handler
        columns = {
            **{k: dict(v) for k, v in spec.columns.items()},
            spec.cursor_field: {"data_type": "timestamp", "nullable": False},
        }
        resource: dict[str, Any] = {
            "name": spec.name,
            "primary_key": spec.primary_key,
            "write_disposition": spec.write_disposition,
            "columns": columns,
            "endpoint": endpoint,
        }
        if spec.on_delete == ON_DELETE_HARD_DELETE:
            _add_hard_delete(resource, spec, key_path)
        if steps:
            resource["processing_steps"] = [*steps, *resource.get("processing_steps", [])]
        resources.append(resource)
    return {"client": {"base_url": base_url, "auth": credentials}, "resources": resources}


def _add_hard_delete(resource: dict[str, Any], spec: EndpointSpec, key_path: str) -> None:
    """Marks the column that means deleted with dlt's `hard_delete` hint.

    A flag field gets the hint itself; a status field is turned into the boolean
    `DELETED_COLUMN` by a processing step, which gets the hint.

    Raises:
        ConfigError: Without a `deleted_field`, or when the resource does not merge.
    """
    if spec.deleted_field is None:
        raise ConfigError(
            f"{key_path}.on_delete",
            "`hard_delete` needs `deleted_field`: the field the API marks deleted records with.",
        )
    if spec.write_disposition != "merge":
        raise ConfigError(
            f"{key_path}.on_delete",
            f"`hard_delete` needs write_disposition `merge`, not `{spec.write_disposition}`.",
        )
    if spec.deleted_field in (spec.primary_key, spec.cursor_field):
        raise ConfigError(
            f"{key_path}.deleted_field",
            f"`{spec.deleted_field}` is the primary key or the cursor field, not a delete marker.",
        )
    columns = resource["columns"]
    if spec.deleted_value is None:
        column = spec.deleted_field
    else:
        column = DELETED_COLUMN
        step = MarkDeleted(spec.deleted_field, spec.deleted_value)
        resource["processing_steps"] = [{"map": step}]
    columns[column] = {**columns.get(column, {}), "hard_delete": True, "nullable": True}
    if spec.deleted_value is not None:
        columns[column]["data_type"] = "bool"
