"""The one door to dlt's internals: every private dlt name the package uses, and why.

The rest of the package uses dlt's public API only. Each function here says why it reaches
inside dlt and which public API would replace it; when dlt offers one, only this module
changes. `nox -s compat` runs the seed and end-to-end tests on every supported dlt minor
(1.29, 1.30, 1.31); a name that moves in a new minor fails there, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from dlt.extract import DltResource
from dlt.extract.incremental import Incremental
from dlt.sources.helpers.rest_client.client import RESTClient
from dlt.sources.rest_api import config_setup

AFTER_INCREMENTAL_AFFINITY: Final = 1.05
"""`placement_affinity` of a step that must run right after dlt's incremental step.

dlt orders a resource's steps by this class attribute: its incremental step has 1, its
`add_limit` step 1.1. Not a private name, but an ordering dlt does not document. Public
replacement: an `add_step(..., after="incremental")`, which dlt does not have."""


def incremental_request_params(
    params: dict[str, Any],
    incremental: Incremental[Any],
    incremental_param: Any,
    transform: Callable[..., Any] | None,
) -> dict[str, Any]:
    """The query parameters dlt's rest_api sends for an incremental on its first request.

    Why: time windows start with exactly the request plain dlt's `paginate_resource` sends,
    then cut its range; the parameters come from dlt's own private helper, so both agree on
    `start_param`/`end_param`, `convert` and `lag`. Public replacement: none in dlt 1.31
    (`paginate_resource` computes them inline).

    Args:
        params: The endpoint's static query parameters.
        incremental: The bound incremental.
        incremental_param: dlt's `IncrementalParam` (start and end parameter names).
        transform: The incremental's `convert` callable, if any.

    Returns:
        The parameters with the incremental's bounds added.
    """
    result: dict[str, Any] = config_setup._set_incremental_params(  # noqa: SLF001 - see docstring
        params, incremental, incremental_param, transform
    )
    return result


def resource_steps(resource: DltResource) -> list[Any]:
    """The transform steps of a resource's pipe, generator first.

    Why: a resource hands dlt arrow tables only when every step after the generator takes
    them; dlt keeps the steps on the resource's private pipe. Public replacement: a
    `DltResource.steps` property, which dlt does not have (only `Pipe.steps`).

    Args:
        resource: The resource.

    Returns:
        Its steps.
    """
    steps: list[Any] = resource._pipe.steps  # noqa: SLF001 - see docstring
    return steps


def step_function(step: Any) -> Callable[..., Any] | None:
    """The user function a dlt map, filter or yield-map step wraps.

    Why: a user's function marked `takes_arrow = True` may receive arrow tables; dlt keeps the
    wrapped function in `_f` (or `_f_meta` when it takes `meta`). Public replacement: none.

    Args:
        step: A `MapItem`, `FilterItem` or `YieldMapItem`.

    Returns:
        The wrapped function, or None.
    """
    function = getattr(step, "_f", None) or getattr(step, "_f_meta", None)
    return function if callable(function) else None


def incremental_state(incremental: Incremental[Any]) -> Mapping[str, Any] | None:
    """The state dict a bound incremental writes its last value and boundary hashes to.

    Why: dlt 1.31 writes `unique_hashes` as `list(set(...))`, whose order changes with every
    process; the package sorts it in place so a run with nothing new leaves the state as it
    was. Public replacement: `Incremental.get_state()` needs an active pipeline context and
    is not documented to return the very dict the step writes to.

    Args:
        incremental: A bound incremental.

    Returns:
        Its cached state, or None before it is bound.
    """
    state: Mapping[str, Any] | None = incremental._cached_state  # noqa: SLF001 - see docstring
    return state


def record_endpoint_input(resource: DltResource, client: RESTClient, path: str) -> None:
    """Records where a resource reads its data, as dlt's rest_api does (dlt >= 1.30).

    Why: dlt's rest_api notes each endpoint in the resource's hints for its lineage; the
    helper is public in `config_setup` from dlt 1.30 and missing in 1.29. Public replacement:
    the same helper, once 1.29 is no longer supported.

    Args:
        resource: The built resource.
        client: Its REST client.
        path: The endpoint path.
    """
    record = getattr(config_setup, "record_endpoint_input", None)
    if record is not None:
        record(resource, client, path)
