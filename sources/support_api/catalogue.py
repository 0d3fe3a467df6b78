"""Turns the catalogue, the source arguments and per-endpoint overrides into a seed-style dict.

The `support_api` source and `support_api_from_config` then share one path: this dict goes
through `config.normalize_config` and `resources.build_resources` like any seed config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from requests.auth import AuthBase

from .config import validate_paginator
from .errors import ConfigError
from .http_policy import RetryPolicy
from .settings import CATALOGUE, CATALOGUE_BY_NAME, MAX_PAGE_SIZE, EndpointSpec

OVERRIDABLE = frozenset(
    f.name for f in dataclasses.fields(EndpointSpec) if f.name not in ("name", "columns")
) | {"error_handler"}
"""Keys accepted under `[sources.support_api.endpoints.<resource>]`."""

_NULLABLE_PARAMS = ("updated_since_param", "updated_before_param")


def _check_int(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got `{value!r}`.")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"expected an integer <= {maximum}, got `{value!r}`.")
    return value


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
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    selected = list(names) if names is not None else [spec.name for spec in CATALOGUE]
    if not selected:
        raise ConfigError("resources", "no resource selected.", CATALOGUE_BY_NAME)
    for name in selected:
        if name not in CATALOGUE_BY_NAME:
            raise ConfigError("resources", f"unknown resource `{name}`.", CATALOGUE_BY_NAME)
    overrides = overrides or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError("endpoints", f"expected a table, got `{type(overrides).__name__}`.")
    for name in overrides:
        if name not in CATALOGUE_BY_NAME:
            raise ConfigError(f"endpoints.{name}", "no such resource.", CATALOGUE_BY_NAME)
    result = []
    for name in selected:
        spec = CATALOGUE_BY_NAME[name]
        override = dict(overrides.get(name) or {})
        for key, value in override.items():
            key_path = f"endpoints.{name}.{key}"
            if key not in OVERRIDABLE:
                raise ConfigError(key_path, "unknown key.", OVERRIDABLE)
            if key in ("paginator", "error_handler"):
                continue
            if key in _NULLABLE_PARAMS and value in ("", None):
                override[key] = None
            elif not isinstance(value, str) or not value:
                raise ConfigError(key_path, f"expected a non-empty string, got `{value!r}`.")
        error_handler = override.pop("error_handler", None)
        if "paginator" in override and isinstance(override["paginator"], str):
            override["paginator"] = {"type": override["paginator"]}
        result.append((dataclasses.replace(spec, **override), error_handler))
    return result


def catalogue_config(
    base_url: str,
    credentials: AuthBase | None,
    names: Sequence[str] | None,
    start_date: str | None,
    end_date: str | None,
    page_size: int,
    lookback_seconds: int,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Writes the selected catalogue resources as a seed-style config dict.

    Args:
        base_url: API root.
        credentials: Resolved auth object.
        names: Resources to load, or None for all.
        start_date: Earliest cursor value to load (first run).
        end_date: Exclusive upper bound of the cursor, for backfill windows.
        page_size: Rows per page.
        lookback_seconds: Seconds subtracted from the last cursor value on incremental runs.
        overrides: Per-endpoint overrides from `endpoints`.

    Returns:
        A config accepted by `support_api_from_config`.
    """
    _check_int(page_size, "page_size", 1, MAX_PAGE_SIZE)
    _check_int(lookback_seconds, "lookback_seconds", 0)
    resources = []
    for spec, error_handler in select_specs(names, overrides):
        key_path = f"endpoints.{spec.name}"
        paginator = validate_paginator(spec.paginator, f"{key_path}.paginator", page_size)
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
        endpoint: dict[str, Any] = {
            "path": spec.path,
            "data_selector": spec.data_selector,
            "paginator": paginator,
            "incremental": incremental,
        }
        if error_handler is not None:
            endpoint["error_handler"] = error_handler
        columns = {
            **{k: dict(v) for k, v in spec.columns.items()},
            spec.cursor_field: {"data_type": "timestamp", "nullable": False},
        }
        resources.append(
            {
                "name": spec.name,
                "primary_key": spec.primary_key,
                "write_disposition": spec.write_disposition,
                "columns": columns,
                "endpoint": endpoint,
            }
        )
    return {"client": {"base_url": base_url, "auth": credentials}, "resources": resources}
