"""Builds dlt resources from a `NormalizedConfig`: the one place resources are made.

dlt's rest_api machinery does the work (dependency graph, placeholders, incremental params,
paging loop); this module gives each resource its own fresh paginator, the session of its retry
policy and an error hook that names the resource and the redacted URL.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Final, cast

import dlt
from dlt.common import jsonpath
from dlt.common.configuration.container import Container
from dlt.common.destination.capabilities import DestinationCapabilitiesContext
from dlt.common.exceptions import DltException
from dlt.common.pipeline import PipelineContext
from dlt.common.schema import Schema
from dlt.common.schema.utils import get_nested_tables
from dlt.extract import DltResource
from dlt.extract.incremental import Incremental
from dlt.extract.items_transform import FilterItem, LimitItem, MapItem, YieldMapItem
from dlt.extract.utils import ensure_table_schema_columns
from dlt.sources.helpers.rest_client.client import RESTClient
from dlt.sources.helpers.rest_client.detector import single_entity_path
from dlt.sources.helpers.rest_client.paginators import BasePaginator, SinglePagePaginator
from dlt.sources.rest_api import create_resources
from dlt.sources.rest_api.config_setup import (
    IncrementalParam,
    build_resource_dependency_graph,
    create_auth,
    create_paginator,
    create_response_hooks,
    paginate_resource,
    process_parent_data_item,
    setup_incremental_object,
)
from dlt.sources.rest_api.typing import ResolvedParam

from . import dlt_compat
from .arrow_pages import ArrowBatches, import_pyarrow, is_arrow_table
from .config import NormalizedConfig, copy_structure, make_paginator, top_level_cursor
from .fan_out import FanOut
from .http_policy import (
    BodyRules,
    PacedSession,
    SessionPool,
    body_check_hook,
    error_hook,
)
from .paginators import CursorPaginator, LinkHeaderPaginator, NextLinkPaginator, PagePrefetch
from .redaction import install_log_redaction, remember_auth
from .settle import (
    Settle,
    SettleFilter,
    bound_param,
    cursor_getter,
    cursor_instant,
    report_held_back,
    settle_bound,
)
from .windows import WindowPlan, walk_in_windows

logger = logging.getLogger(__name__)


def build_resources(config: NormalizedConfig) -> list[DltResource]:
    """Creates one dlt resource per configured resource, parents before children.

    Args:
        config: The validated config.

    Returns:
        The resources, parents before their children, otherwise in the configured order.
    """
    pool = SessionPool(origins=config.origins)
    fan_out = FanOut()
    for auth in config.auths():
        remember_auth(auth)
    install_log_redaction()
    auto_format = config.file_format == "auto"
    file_format = None if auto_format else config.file_format
    defaults = cast("Any", config.resource_defaults)
    graph, _, parents = build_resource_dependency_graph(defaults, cast("Any", config.resources))
    by_name: dict[str, dict[str, Any] | DltResource] = {
        (entry.name if isinstance(entry, DltResource) else entry["name"]): entry
        for entry in config.resources
    }
    parent_of = {p.resolve_config["resource"] for ps in parents.values() for p in ps or []}
    built: dict[str, DltResource] = {}
    for name in graph.static_order():
        entry = by_name[name]
        if isinstance(entry, DltResource):
            built[name] = entry
            continue
        resource = _with_runtime_parts(entry, config)
        parent_names = {p.resolve_config["resource"] for p in parents.get(name) or []}
        if file_format is not None:
            resource.setdefault("file_format", file_format)
        # dlt's resource-level `parallelized` is lost when rest_api binds the generator to its
        # arguments, so the built resource is parallelized instead (as the source-level flag
        # does); a dependent resource reads its parents' children concurrently itself
        parallel = resource.pop("parallelized", config.parallelized) and not parent_names
        client = _client_config(config, pool, resource, name)
        batch: list[Any] = [built[p] for p in parent_names]
        batch.append(resource)
        batch_graph, endpoint_map, param_map = build_resource_dependency_graph(
            copy_structure(defaults), batch
        )
        settle = config.settle.get(name)
        top_level = not (parent_names or name in parent_of)
        plan = config.windows.get(name)
        if plan is None and top_level:
            plan = _window_plan_of_dict(
                cast("dict[str, Any]", endpoint_map[name]),
                config.paginators.get(name),
                config.concurrency,
                arrow=auto_format and _arrow_eligible(resource, entry, defaults),
            )
        own = True
        if parent_names:
            (parent_name,) = parent_names
            built[name] = _own_child_resource(
                cast("dict[str, Any]", endpoint_map[name]),
                client,
                built[parent_name],
                param_map[name] or [],
                functools.partial(
                    fan_out.map_ordered,
                    width=config.concurrency,
                    # one bound for the resource, however many parent pages dlt has asked for
                    slots=threading.BoundedSemaphore(config.concurrency),
                ),
            )
            own = False  # its rows past the settle bound are dropped in the incremental step
        elif plan is not None:
            built[name] = _own_resource(
                cast("dict[str, Any]", endpoint_map[name]),
                client,
                plan,
                functools.partial(_fresh_paginator, config.paginators.get(name)),
            )
        elif auto_format and top_level and _arrow_eligible(resource, entry, defaults):
            # a parent's records stay records: its children read them
            built[name] = _own_resource(cast("dict[str, Any]", endpoint_map[name]), client)
        elif settle is not None and settle.before_param and top_level:
            # dlt's own paging sends no "updated before" without an `end_value` (which keeps
            # no state): this generator sends the settle bound, and its pages stay records
            built[name] = _own_resource(
                cast("dict[str, Any]", endpoint_map[name]), client, records=True
            )
        else:
            created = create_resources(cast("Any", client), batch_graph, endpoint_map, param_map)
            built[name] = created[name]
            own = False
        # the generators built here hold back rows past the settle bound themselves; dlt's
        # own (parents, children) in the incremental step
        _keep_state_stable(
            built[name], cast("dict[str, Any]", endpoint_map[name]), settle, filter_in_step=not own
        )
        if parallel:
            built[name].parallelize()
        if auto_format and "file_format" not in entry:
            built[name].add_step(_BulkFormatOnFirstPage())
    # parents before their children, as dlt's `rest_api_resources` returns them (dlt's
    # dependency graph keeps the configured order among resources that depend on none)
    return list(built.values())


_WALK_ONLY_PAGINATORS: Final = (CursorPaginator, NextLinkPaginator, LinkHeaderPaginator)
"""Paginators that can only fetch one page after another (each page names the next): time
windows are their way to read concurrently. Offset and page-number pages are fetched ahead
instead (`paginators.PagePrefetch`)."""


def _client_config(
    config: NormalizedConfig, pool: SessionPool, resource: dict[str, Any], name: str
) -> dict[str, Any]:
    """The client settings a resource's REST client is made from: session and paginator.

    The session is the user's (`client.session`, with our pacing mounted) or one of the
    pool's for the resource's retry policy. The client's paginator is set as dlt's
    `RESTClient` gets it: a resource that sets none pages with a copy of it. Paginators that
    fetch pages ahead get the paced session they fetch through.
    """
    policy = config.policies[name]
    session = config.client.get("session")
    if session is not None:
        # the user's session is used, as plain dlt uses it (with our pacing mounted)
        pool.pace_user_session(session, policy)
    else:
        session = pool.session_for(policy, name)
    client = {**config.client, "session": session}
    client_paginator = make_paginator(config.client_paginator)
    if client_paginator is not None:
        client["paginator"] = client_paginator
    for paginator in (resource["endpoint"].get("paginator"), client_paginator):
        prefetch = getattr(paginator, "prefetch", None)
        if isinstance(prefetch, PagePrefetch) and isinstance(session, PacedSession):
            prefetch.session = session
    return client


def _window_plan_of_dict(
    resource: dict[str, Any],
    paginator: Mapping[str, Any] | BasePaginator | None,
    concurrency: int,
    *,
    arrow: bool,
) -> WindowPlan | None:
    """How a top-level dict resource is read in time windows, if its shape allows.

    It does when its incremental filters the updated timestamp both ways (`start_param` and
    `end_param` in the query), on a top-level cursor compared with `max` and sent as it is (no
    `convert`), and its pages come through a paginator that walks one page after another.
    The catalogue says the same of its endpoints (`catalogue.window_plans`).
    """
    endpoint = resource["endpoint"]
    incremental = endpoint.get("incremental")
    if concurrency <= 1 or not isinstance(incremental, Mapping):
        return None
    cursor = incremental.get("cursor_path")
    since, before = incremental.get("start_param"), incremental.get("end_param")
    if (
        not isinstance(cursor, str)
        or not cursor.isidentifier()
        or not isinstance(since, str)
        or not isinstance(before, str)
        or incremental.get("convert") is not None
        or incremental.get("last_value_func", max) is not max
        or str(endpoint.get("method", "GET")).upper() != "GET"
        or not isinstance(make_paginator(paginator), _WALK_ONLY_PAGINATORS)
    ):
        return None
    return WindowPlan(
        cursor_field=cursor,
        since_param=since,
        before_param=before,
        concurrency=concurrency,
        arrow=arrow,
    )


_ROW_HASH_STRATEGIES: Final = frozenset({"scd2", "upsert", "insert-only", "cdc"})
"""Merge strategies whose `_dlt_id` dlt derives from the row (arrow batches get random ids)."""


def _arrow_eligible(
    resource: dict[str, Any], entry: dict[str, Any], defaults: dict[str, Any]
) -> bool:
    """Whether a top-level resource's pages may become arrow tables (`arrow_pages`).

    Not when the config picks a file format, when the merge strategy derives `_dlt_id` from
    the row, when columns come from a model (dlt validates records with it), with a schema
    contract (dlt applies it to records and tables differently) or a table name other than
    the resource's. (Processing steps are checked when the resource runs:
    `_steps_take_arrow`.)
    """
    if "file_format" in entry or "schema_contract" in resource or "schema_contract" in defaults:
        return False
    if resource.get("table_name", resource["name"]) != resource["name"]:
        return False
    if not isinstance(resource.get("columns") or {}, dict | list):
        return False
    disposition = resource.get("write_disposition", defaults.get("write_disposition"))
    if isinstance(disposition, dict):
        return disposition.get("strategy") not in _ROW_HASH_STRATEGIES
    return True


def _keep_state_stable(
    built: DltResource,
    resource: dict[str, Any],
    settle: Settle | None = None,
    *,
    filter_in_step: bool = True,
) -> None:
    """Hints a built resource with its endpoint's incremental as `StableStateIncremental`.

    The hint wins over the incremental the resource's generator gets as its argument (dlt
    keeps an incremental set from hints), and both come from the same endpoint config.

    Args:
        built: The resource.
        resource: Its endpoint config.
        settle: Its settle margin (None: none).
        filter_in_step: Rows past the settle bound are dropped by the incremental step (the
            resource's generator does not drop them itself).
    """
    endpoint = resource["endpoint"]
    incremental, _, _ = setup_incremental_object(
        dict(endpoint.get("params") or {}), endpoint.get("incremental")
    )
    if incremental is not None:
        stable = StableStateIncremental.like(incremental)
        stable.settle = settle
        stable.filter_in_step = filter_in_step
        built.apply_hints(incremental=stable)


def _key_columns(key: Any) -> tuple[str, ...]:
    """A `primary_key` hint as column names (none for a dynamic hint)."""
    if isinstance(key, str):
        return (key,)
    if isinstance(key, list | tuple):
        return tuple(k for k in key if isinstance(k, str))
    return ()


def _top_level_name(incremental: Incremental[Any] | None) -> str | None:
    """The incremental's cursor when it is a top-level field arrow can compare; else None."""
    if incremental is None:
        return None
    path = incremental.cursor_path
    if not isinstance(path, str) or not path.isidentifier():
        return None
    return path if incremental.last_value_func in (max, min) else None


def _own_resource(
    resource: dict[str, Any],
    client_config: dict[str, Any],
    plan: WindowPlan | None = None,
    new_paginator: Callable[[], BasePaginator | None] | None = None,
    *,
    records: bool = False,
) -> DltResource:
    """Builds a resource whose pages may be handed to dlt as arrow tables.

    The same as dlt's rest_api builds it (hints, incremental, response hooks, processing
    steps), except for the generator: with a `plan` it reads the endpoint in concurrent time
    windows (`windows.walk_in_windows`), without one it pages as dlt's `paginate_resource`
    does. Batches of pages become arrow tables where that is faithful (`arrow_pages`), unless
    `records`. Either way it keeps the settle margin of its incremental
    (`StableStateIncremental.settle`): the bound goes to the server as the endpoint's
    "updated before" parameter, and rows at or past it are dropped before dlt sees them.
    """
    resource = dict(resource)
    endpoint = resource.pop("endpoint")
    steps = resource.pop("processing_steps", [])
    params = dict(endpoint.get("params") or {})
    incremental_object, incremental_param, transform = setup_incremental_object(
        params, endpoint.get("incremental")
    )
    client = _rest_client(endpoint, client_config)
    hooks = create_response_hooks(endpoint.get("response_actions"))
    path = endpoint["path"]
    selector = endpoint.get("data_selector")

    def fetch(window_params: dict[str, Any]) -> Iterator[tuple[list[Any], bool]]:
        for page in client.paginate(
            path=path,
            params=window_params,
            paginator=new_paginator() if new_paginator is not None else None,
            data_selector=selector,
            hooks=hooks,
        ):
            yield page, page.paginator.has_next_page

    cursor_field = plan.cursor_field if plan is not None else _top_level_name(incremental_object)
    arrow = not records and (
        plan.arrow if plan is not None else incremental_object is None or bool(cursor_field)
    )
    import_pyarrow_for_run(arrow)
    batches = (
        ArrowBatches(
            table=resource["name"],
            cursor_field=cursor_field,
            # a dict or a list (`_arrow_eligible`; catalogue resources declare a dict)
            hints=ensure_table_schema_columns(resource.get("columns") or {}),
            schema=_current_schema,
            primary_key=_key_columns(resource.get("primary_key")),
            max_nesting=_resource_nesting,
        )
        if arrow
        else None
    )

    def pages_of(incremental_object: Incremental[Any] | None) -> Iterator[Any]:
        run_params, run_param, settle, bound_sent = _run_params(
            params, incremental_object, incremental_param, transform, by_dlt=plan is None
        )
        if plan is None:
            pages: Iterator[list[Any]] = paginate_resource(
                method=endpoint.get("method", "GET"),
                path=path,
                headers=endpoint.get("headers"),
                params=run_params,
                json=endpoint.get("json"),
                data=endpoint.get("data"),
                paginator=endpoint.get("paginator"),
                data_selector=selector,
                hooks=hooks,
                client=client,
                incremental_object=incremental_object,
                incremental_param=run_param,
                incremental_cursor_transform=transform,
            )
        elif plan.concurrency > 1:
            # the policy's rate-limit budget, which more walks would not outrun
            session = client_config["session"]
            budget = session.pacer.budget if isinstance(session, PacedSession) else None
            pages = walk_in_windows(fetch, plan, run_params, budget=budget)
        else:
            pages = (page for page, _ in fetch(run_params))
        # windows keep only rows below the bound they were given; other walks are filtered
        # here, in case an API ignores its "updated before" parameter
        windowed = plan is not None and plan.concurrency > 1 and bound_sent
        pages = _held_back(pages, settle, resource["name"], windowed=windowed)
        if batches is not None and loads_parquet() and _steps_take_arrow():
            yield from batches.batches(pages)
        else:
            yield from pages

    if incremental_object is None:

        def own_pages() -> Iterator[Any]:
            yield from pages_of(None)

    else:
        # dlt binds the incremental through this argument's default, as rest_api does

        def own_pages(  # type: ignore[misc]
            incremental_object: Incremental[Any] = incremental_object,
        ) -> Iterator[Any]:
            yield from pages_of(incremental_object)

    built: DltResource = dlt.resource(own_pages, **resource)()
    # the data location dlt's rest_api records for each resource it builds (its lineage)
    dlt_compat.record_endpoint_input(built, client, path)
    if batches is not None:
        built.add_step(_AfterIncremental(batches.finish_with_hints))
    _add_processing_steps(built, steps)
    return built


def _run_params(
    params: dict[str, Any],
    incremental: Incremental[Any] | None,
    incremental_param: IncrementalParam | None,
    transform: Callable[..., Any] | None,
    *,
    by_dlt: bool,
) -> tuple[dict[str, Any], IncrementalParam | None, SettleFilter | None, bool]:
    """The params of a run's first request, and how the run keeps its settle margin.

    Args:
        params: The endpoint's params (copied, not changed).
        incremental: The bound incremental, if any.
        incremental_param: Its start and end parameters.
        transform: The endpoint's incremental `convert`, if any.
        by_dlt: dlt's `paginate_resource` sets the incremental parameters (only the bound is
            added here); else they are set here as it sets them.

    Returns:
        The params, the incremental parameters to hand dlt (the end one left out where the
        settle bound takes its place), the run's settle filter (None: no margin) and whether
        the bound goes to the server.
    """
    run_params = dict(params)
    settle = incremental.settle_filter if isinstance(incremental, StableStateIncremental) else None
    if incremental is None or incremental_param is None:
        return run_params, incremental_param, settle, False
    if not by_dlt:
        # the same parameters dlt's own paging sends (`paginate_resource`)
        run_params = dlt_compat.incremental_request_params(
            run_params, incremental, incremental_param, transform
        )
    elif settle is not None:
        # the bound replaces the "updated before" dlt would send (None without an end value)
        incremental_param = IncrementalParam(start=incremental_param.start, end=None)
    sent = isinstance(incremental, StableStateIncremental) and _send_bound(
        run_params, incremental, transform
    )
    return run_params, incremental_param, settle, sent


def _held_back(
    pages: Iterator[list[Any]], settle: SettleFilter | None, name: str, *, windowed: bool
) -> Iterator[list[Any]]:
    """The pages without the rows at or past the settle bound (logged at the end).

    Args:
        pages: The walk's pages.
        settle: The run's settle filter; None: the pages as they are.
        name: The resource's name, for the log.
        windowed: The walks were given the bound: they dropped those rows already.

    Yields:
        The pages.
    """
    if settle is None:
        yield from pages
        return
    try:
        yield from pages if windowed else settle.pages(pages)
    finally:
        report_held_back(name, settle.held_back, settle.bound)


def _send_bound(
    params: dict[str, Any],
    incremental: StableStateIncremental,
    transform: Callable[..., Any] | None,
) -> bool:
    """Adds the settle bound to a walk's params as the endpoint's "updated before".

    Written like the value sent as "updated since" (text, datetime or epoch number), then
    converted as that one is (`convert`).

    Args:
        params: The walk's request params, "updated since" already set.
        incremental: The bound incremental.
        transform: The endpoint's incremental `convert`, if any.

    Returns:
        Whether the bound was added (the endpoint has the parameter and the start value is
        below the bound).
    """
    settle = incremental.settle
    settle_filter = incremental.settle_filter
    if settle is None or settle_filter is None or not incremental.settle_on_server:
        return False
    if settle.before_param is None:
        return False
    value = bound_param(settle_filter.bound, incremental.last_value)
    params[settle.before_param] = transform(value) if transform is not None else value
    return True


def _own_child_resource(
    resource: dict[str, Any],
    client_config: dict[str, Any],
    parent: DltResource,
    resolved_params: list[ResolvedParam],
    fan_out: Callable[[Callable[[Any], list[list[Any]]], list[Any]], Iterator[list[list[Any]]]],
) -> DltResource:
    """Builds a dependent resource whose parents' children are read concurrently.

    Each parent record is turned into its request by dlt's own `process_parent_data_item`
    (placeholders in path, params, headers and json; `include_from_parent` fields), and read
    to its last page as dlt's `paginate_dependent_resource` reads it; `fan_out` runs the
    parents of a page together and hands their pages over in parent order, so the rows are
    those plain dlt loads, in the same order. Hints, incremental, response hooks and
    processing steps are set as dlt's rest_api sets them.
    """
    resource = dict(resource)
    endpoint = resource.pop("endpoint")
    steps = resource.pop("processing_steps", [])
    include_from_parent: list[str] = resource.pop("include_from_parent", [])
    params = dict(endpoint.get("params") or {})
    incremental_object, incremental_param, transform = setup_incremental_object(
        params, endpoint.get("incremental")
    )
    resolved_names = {param.param_name for param in resolved_params}
    base_params = {k: v for k, v in params.items() if k not in resolved_names}
    client = _rest_client(endpoint, client_config)
    hooks = create_response_hooks(endpoint.get("response_actions"))
    path = endpoint["path"]
    # none: the client's paginator (dlt's client copies it per walk) or dlt's detection
    paginator = endpoint.get("paginator")

    def children_of(
        items: list[dict[str, Any]], incremental_object: Incremental[Any] | None
    ) -> Iterator[list[Any]]:
        run_params = base_params
        if incremental_object is not None:
            run_params = dlt_compat.incremental_request_params(
                dict(base_params), incremental_object, incremental_param, transform
            )

        def read_parent(item: dict[str, Any]) -> list[list[Any]]:
            request = process_parent_data_item(
                path=path,
                item=item,
                resolved_params=resolved_params,
                headers=endpoint.get("headers"),
                params=run_params,
                request_json=endpoint.get("json"),
                request_data=endpoint.get("data"),
                include_from_parent=include_from_parent,
                incremental=incremental_object,
                incremental_value_convert=transform,
            )
            pages: list[list[Any]] = []
            for page in client.paginate(
                method=endpoint.get("method", "get"),
                path=request.path,
                headers=request.headers,
                params=request.params,
                json=request.json,
                data=request.data,
                paginator=copy.deepcopy(paginator),
                data_selector=endpoint.get("data_selector"),
                hooks=hooks,
            ):
                if request.parent_record:
                    for record in page:
                        record.update(request.parent_record)
                pages.append(page)
            return pages

        for pages in fan_out(read_parent, list(items)):
            yield from pages

    if incremental_object is None:

        def children(items: list[dict[str, Any]]) -> Iterator[list[Any]]:
            yield from children_of(items, None)

    else:
        # dlt binds the incremental through this argument's default, as for `own_pages`

        def children(  # type: ignore[misc]
            items: list[dict[str, Any]], incremental_object: Incremental[Any] = incremental_object
        ) -> Iterator[list[Any]]:
            yield from children_of(items, incremental_object)

    # the hints come from the endpoint config as a dict, which dlt's overloads cannot type
    built: DltResource = dlt.resource(  # type: ignore[call-overload]
        children, data_from=parent, **resource
    )()
    dlt_compat.record_endpoint_input(built, client, path)
    _add_processing_steps(built, steps)
    return built


def _rest_client(endpoint: dict[str, Any], client_config: dict[str, Any]) -> RESTClient:
    """The endpoint's REST client, made as dlt's rest_api makes it, on the resource's session."""
    return RESTClient(
        base_url=client_config["base_url"],
        headers=client_config.get("headers"),
        auth=create_auth(endpoint.get("auth", client_config.get("auth"))),
        paginator=create_paginator(client_config.get("paginator")),
        session=client_config["session"],
    )


def _add_processing_steps(built: DltResource, steps: list[dict[str, Any]]) -> None:
    """Adds a resource's `processing_steps` in order, as dlt's rest_api adds them."""
    for step in steps:
        if "filter" in step:
            built.add_filter(step["filter"])
        if "map" in step:
            built.add_map(step["map"])
        if "yield_map" in step:
            built.add_yield_map(step["yield_map"])


def _fresh_paginator(spec: Mapping[str, Any] | BasePaginator | None) -> BasePaginator | None:
    """A paginator of its own for one time window: built from its config, or a copy.

    Windows walk cursor and link paginators, which fetch no pages ahead; each walk needs its
    own state (the cursor or link it follows).
    """
    return copy.deepcopy(spec) if isinstance(spec, BasePaginator) else make_paginator(spec)


def _steps_take_arrow() -> bool:
    """Whether every map and filter of the resource being extracted takes arrow tables.

    A step the user added (in `processing_steps` or with `add_map`/`add_filter`) is handed
    records, one page at a time, as plain dlt hands them; only the package's own steps take
    arrow batches. `add_limit(n)` keeps pages too, so it still stops after `n` pages.
    Outside an extracting pipeline the answer is no.
    """
    try:
        steps = dlt_compat.resource_steps(dlt.current.resource())
    except (DltException, KeyError):  # no resource being extracted: records are safe
        return False
    for step in steps[1:]:
        if isinstance(step, LimitItem) and step.max_items not in (None, -1):
            return False  # `add_limit` counts items: pages, as on plain dlt, not arrow batches
        if isinstance(step, MapItem | FilterItem | YieldMapItem):
            function = dlt_compat.step_function(step)
            if not getattr(step, "takes_arrow", False) and not getattr(
                function, "takes_arrow", False
            ):
                return False
    return True


class StableStateIncremental(Incremental[Any]):
    """dlt's incremental, with sorted boundary hashes and a settle margin.

    dlt 1.31 stores the hashes of the rows at the last cursor value in the resource state as
    `list(set(...))`, in the order of Python's string hashing, which changes with every
    process. A scheduled run that finds nothing new then still writes the same hashes in
    another order: the state's version hash changes, and dlt loads the pipeline state into the
    destination again (a load package, a load job and a `_dlt_pipeline_state` row on every
    run). dlt reads the list back as a set, so sorted, the same hashes give the same state and
    such a run loads nothing.

    With a `settle` margin (and no `end_value`: a window keeps no state), binding fixes the
    run's bound, `now - settle.seconds`; rows at or past it never reach dlt's filter, so the
    cursor kept in state stays below the bound (`settle.py`). The resource's own generator
    drops them (and sends the bound to the server); dlt's generators (`filter_in_step`) leave
    that to this step.
    """

    settle: Settle | None = None
    """The resource's settle margin; None keeps none."""
    filter_in_step: bool = True
    """Drop rows past the bound here, in the incremental step."""
    settle_filter: SettleFilter | None = None
    """This run's bound and filter, set by `bind` (None: no margin this run)."""
    settle_on_server: bool = False
    """This run sends the bound to the server (the start value is below it)."""

    @classmethod
    def like(cls, incremental: Incremental[Any]) -> StableStateIncremental:
        """The same incremental (every setting, no state) as this class.

        Args:
            incremental: An unbound incremental, as dlt's rest_api setup makes it.

        Returns:
            A new incremental with the settings of `incremental`.
        """
        # the arguments dlt's own `Incremental.merge` copies an incremental with
        settings = dict(
            incremental,
            last_value_func=incremental.last_value_func,
            primary_key=incremental.primary_key,
            lag=incremental.lag,
        )
        stable = cls(**settings)
        stable.resource_name = incremental.resource_name
        return stable

    def merge(self, other: Incremental[Any]) -> Incremental[Any]:
        """The merge of dlt (used by `copy` too), keeping the settle margin of either side.

        Args:
            other: The incremental whose set values win.

        Returns:
            The merged incremental.
        """
        merged = super().merge(other)
        if isinstance(merged, StableStateIncremental):
            source = other if isinstance(other, StableStateIncremental) and other.settle else self
            merged.settle = source.settle
            merged.filter_in_step = source.filter_in_step
        return merged

    def bind(self, pipe: Any) -> StableStateIncremental:
        """Binds as dlt does, then fixes this run's settle bound.

        Args:
            pipe: The pipe being evaluated.

        Returns:
            Itself.
        """
        super().bind(pipe)
        self.settle_filter = None
        self.settle_on_server = False
        settle = self.settle
        if (
            settle is None
            or settle.seconds <= 0
            or self.end_value is not None
            or self.last_value_func is not max
            or not isinstance(self.cursor_path, str)
        ):
            return self
        start = self.last_value
        start_instant = cursor_instant(start, settle.epoch_numbers)
        if start is not None and start_instant is None:
            return self  # the cursor is no timestamp: no time bound applies
        bound = settle_bound(settle.seconds)
        self.settle_filter = SettleFilter(
            bound=bound, cursor=cursor_getter(self.cursor_path), epoch_numbers=settle.epoch_numbers
        )
        ahead = start_instant is not None and start_instant >= bound
        # a start timestamp is needed to write the bound as the API writes its cursor
        self.settle_on_server = settle.before_param is not None and start is not None and not ahead
        if ahead:
            logger.warning(
                "%s: the cursor in state (%s) is not before the settle bound (%s, %d s ago):"
                " nothing newer is loaded until the bound passes it",
                self.resource_name,
                start,
                bound.isoformat(),
                settle.seconds,
            )
        return self

    def __call__(self, rows: Any, meta: Any = None) -> Any:
        """Filters `rows` as dlt does, then sorts the boundary hashes dlt wrote to the state.

        Rows at or past the settle bound are dropped first, unless the generator did.
        """
        if self.settle_filter is not None and self.filter_in_step:
            if isinstance(rows, list):
                rows = self.settle_filter.keep(rows)
            elif isinstance(rows, dict) and not self.settle_filter.keep([rows]):
                rows = None
        filtered = super().__call__(rows, meta)
        state = dlt_compat.incremental_state(self)
        hashes = state.get("unique_hashes") if state else None
        if hashes:
            hashes.sort()
        return filtered


class _AfterIncremental(MapItem):
    """A map step placed after dlt's incremental step, wherever dlt puts that one.

    dlt appends the incremental step when it binds a resource, behind steps added before;
    `placement_affinity` above the incremental's (1) keeps this one behind it (dlt's own
    `add_limit` step uses 1.1). The incremental then compares the cursor as text, as on the
    row path, before this step types it.
    """

    placement_affinity: ClassVar[float] = dlt_compat.AFTER_INCREMENTAL_AFFINITY
    takes_arrow: ClassVar[bool] = True


def _resource_nesting() -> int | None:
    """`max_table_nesting` of the resource being extracted (None: not set, or none running)."""
    try:
        return dlt.current.resource().max_table_nesting
    except (DltException, KeyError):
        return None


def _current_schema() -> Schema | None:
    try:
        return dlt.current.source_schema()
    except DltException:
        return None


def _destination_capabilities() -> DestinationCapabilitiesContext | None:
    """Capabilities of the active pipeline's destination; None without one.

    While a pipeline runs a step, dlt has put them in the container, with the file formats of
    its staging destination merged in; the destination's `capabilities()` would resolve its
    configuration anew at every call (about 3 ms each).
    """
    container = Container()
    context = container[PipelineContext]
    if not context.is_active():
        return None
    if DestinationCapabilitiesContext in container:
        return container[DestinationCapabilitiesContext]
    destination = getattr(context.pipeline(), "destination", None)
    if destination is None:
        return None
    capabilities: DestinationCapabilitiesContext = destination.capabilities()
    return capabilities


@functools.cache
def _has_pyarrow() -> bool:
    """Whether pyarrow is installed (`dlt[parquet]`), without importing it."""
    return importlib.util.find_spec("pyarrow") is not None


def import_pyarrow_for_run(resource_takes_arrow: bool) -> None:
    """Imports pyarrow while the source is built, on the caller's thread, if the run may use it.

    That is: the resource may make arrow tables, pyarrow is installed, and the active
    pipeline's destination, where one is known yet, loads parquet.

    A parallelized resource extracts in a worker thread. Had it imported pyarrow there, at
    its first batch, dlt's extract loop could meanwhile check another resource's item with
    pyarrow in `sys.modules` but half initialised, and fail the run (`AttributeError: partially
    initialized module 'pyarrow' has no attribute 'Table'`, in `get_data_item_format`).

    Args:
        resource_takes_arrow: Whether the resource being built may make arrow tables.
    """
    if not resource_takes_arrow or "pyarrow" in sys.modules or not _has_pyarrow():
        return
    capabilities = _destination_capabilities()
    if capabilities is None or _takes_parquet(capabilities):
        import_pyarrow()  # else no arrow tables in this run (records load as rows)


def _takes_parquet(capabilities: DestinationCapabilitiesContext) -> bool:
    """Whether a destination with these capabilities loads parquet files."""
    return "parquet" in (capabilities.supported_loader_file_formats or ())


def loads_parquet() -> bool:
    """Whether the active pipeline's destination loads parquet files (arrow tables go as is).

    Also False without pyarrow: dlt writes no parquet then, and records stay records.
    """
    capabilities = _destination_capabilities()
    return capabilities is not None and _takes_parquet(capabilities) and _has_pyarrow()


def fast_file_format(exact_numbers: bool = False) -> str | None:
    """Picks a bulk load file format for the active pipeline's destination.

    dlt's default for DuckDB (and other SQL destinations) is `insert_values`: row-by-row
    INSERT statements, the slowest part of a large load. When the active pipeline's
    destination prefers that, this returns `parquet` where it loads parquet (`loads_parquet`),
    else `jsonl` where it takes that. For records on dlt's row path parquet is the
    faster of the two: dlt's parquet writer hands arrow a few thousand rows at a time, its
    jsonl writer gzips every row on its own (measured on 50k nested tickets into DuckDB:
    normalize 5.1 s with jsonl, 3.3 s with parquet).

    Args:
        exact_numbers: The table has `decimal` (or `wei`) columns: dlt's parquet writer refuses
            a value with more decimals than the column's scale, where jsonl and row-by-row
            loads round it as plain dlt does; `jsonl` then, or None.

    Returns:
        `parquet`, `jsonl`, or None when there is no active pipeline with a destination or the
        destination's preferred format is already a bulk one.
    """
    capabilities = _destination_capabilities()
    if capabilities is None or capabilities.preferred_loader_file_format != "insert_values":
        return None
    if not exact_numbers and loads_parquet():
        return "parquet"
    return "jsonl" if "jsonl" in (capabilities.supported_loader_file_formats or ()) else None


_EXACT_NUMBER_TYPES: Final = frozenset({"decimal", "wei"})


def _has_exact_numbers(resource: DltResource, item: Any) -> bool:
    """Whether the resource's tables have a `decimal` or `wei` column, hinted or in the schema.

    Unknown (a table name that depends on the item and cannot be computed) counts as yes.
    """
    try:
        table = resource.compute_table_schema(item)
    except DltException:
        return True
    columns = list(table.get("columns", {}).values())
    schema = _current_schema()
    name = table.get("name")
    if schema is not None and name is not None and name in schema.tables:
        for known in get_nested_tables(schema.tables, name):
            columns.extend(known.get("columns", {}).values())
    return any(column.get("data_type") in _EXACT_NUMBER_TYPES for column in columns)


class _BulkFormatOnFirstPage:
    """Sets the resource's file format when its first page is extracted.

    The destination is known for sure only then (the source may be created before the
    pipeline), and the hint still reaches the table schema before the first item does.
    """

    takes_arrow: ClassVar[bool] = True

    def __init__(self) -> None:
        self._done = False

    def __call__(self, item: Any, meta: Any = None) -> Any:
        del meta
        if not self._done:
            self._done = True
            # the pipeline extracts a copy of the resource: hint the one being extracted
            resource = dlt.current.resource()
            if is_arrow_table(item) and loads_parquet():
                # arrow tables are written as parquet: keep them so (they hold no decimals)
                file_format: str | None = "parquet"
            else:
                file_format = fast_file_format(_has_exact_numbers(resource, item))
            if file_format is not None:
                resource.apply_hints(file_format=cast("Any", file_format))
        return item


def _with_runtime_parts(resource: dict[str, Any], config: NormalizedConfig) -> dict[str, Any]:
    """Copies a resource entry and adds its fresh paginator and its error hook."""
    name = resource["name"]
    resource = copy_structure(resource)
    endpoint = resource["endpoint"]
    paginator = make_paginator(config.paginators.get(name))
    if name in config.uses_client_paginator:
        # left to dlt, as plain dlt leaves it: the client's paginator, or a single page
        if single_entity_path(endpoint["path"]):
            paginator = SinglePagePaginator()
    elif paginator is not None:
        endpoint["paginator"] = paginator
    defaults_endpoint = config.resource_defaults.get("endpoint") or {}
    actions = endpoint.get("response_actions", defaults_endpoint.get("response_actions")) or []
    selector = endpoint.get("data_selector", defaults_endpoint.get("data_selector"))
    rules = BodyRules(
        data_selector=selector if isinstance(selector, str) else None,
        # without a selector dlt detects where the records are: nothing to check against
        expects_list=isinstance(selector, str)
        and paginator is not None
        and not isinstance(paginator, SinglePagePaginator),
        required_fields=_required_fields(resource, config) if isinstance(selector, str) else (),
    )
    endpoint["response_actions"] = [
        *actions,
        error_hook(name, config.policies[name]),
        body_check_hook(name, rules),
    ]
    if isinstance(selector, str):
        # dlt compiles a string selector on every page (~2 ms each); compile it once
        endpoint["data_selector"] = jsonpath.compile_path(selector)
    return resource


def _required_fields(resource: dict[str, Any], config: NormalizedConfig) -> tuple[str, ...]:
    """Top-level fields each record must carry: the primary key and the incremental cursor."""
    defaults = config.resource_defaults
    fields = list(_key_columns(resource.get("primary_key", defaults.get("primary_key"))))
    if (cursor := top_level_cursor(resource, defaults)) is not None:
        fields.append(cursor)
    # fields added from a parent record (`_<parent>_<field>`) are not in the response
    return tuple(f for f in fields if f.isidentifier() and not f.startswith("_"))
