"""Builds dlt resources from a `NormalizedConfig`: the one place resources are made.

dlt's rest_api machinery does the work (dependency graph, placeholders, incremental params,
paging loop); this module gives each resource its own fresh paginator, the session of its retry
policy and an error hook that names the resource and the redacted URL.
"""

from __future__ import annotations

from typing import Any, cast

from dlt.extract import DltResource
from dlt.sources.rest_api import create_resources
from dlt.sources.rest_api.config_setup import build_resource_dependency_graph

from .config import NormalizedConfig, make_paginator
from .http_policy import SessionPool, error_hook


def build_resources(config: NormalizedConfig, pool: SessionPool | None = None) -> list[DltResource]:
    """Creates one dlt resource per configured resource, parents before children.

    Args:
        config: The validated config.
        pool: Sessions per retry policy; a new pool when not given.

    Returns:
        The resources, in the order they were configured.
    """
    pool = pool or SessionPool()
    defaults = cast("Any", config.resource_defaults)
    graph, _, parents = build_resource_dependency_graph(defaults, cast("Any", config.resources))
    by_name: dict[str, dict[str, Any] | DltResource] = {
        (entry.name if isinstance(entry, DltResource) else entry["name"]): entry
        for entry in config.resources
    }
    built: dict[str, DltResource] = {}
    for name in graph.static_order():
        entry = by_name[name]
        if isinstance(entry, DltResource):
            built[name] = entry
            continue
        resource = _with_runtime_parts(entry, config)
        policy = config.policies[name]
        client = {**config.client, "session": pool.session_for(policy)}
        parent_names = {p.resolve_config["resource"] for p in parents.get(name) or []}
        batch: list[Any] = [built[p] for p in parent_names]
        batch.append(resource)
        batch_graph, endpoint_map, param_map = build_resource_dependency_graph(defaults, batch)
        created = create_resources(cast("Any", client), batch_graph, endpoint_map, param_map)
        built[name] = created[name]
    return [built[name] for name in by_name]


def _with_runtime_parts(resource: dict[str, Any], config: NormalizedConfig) -> dict[str, Any]:
    """Copies a resource entry and adds its fresh paginator and its error hook."""
    name = resource["name"]
    endpoint = dict(resource["endpoint"])
    paginator = make_paginator(config.paginators.get(name))
    if paginator is not None:
        endpoint["paginator"] = paginator
    defaults_endpoint = config.resource_defaults.get("endpoint") or {}
    actions = endpoint.get("response_actions", defaults_endpoint.get("response_actions")) or []
    endpoint["response_actions"] = [*actions, error_hook(name, config.policies[name])]
    return {**resource, "endpoint": endpoint}
