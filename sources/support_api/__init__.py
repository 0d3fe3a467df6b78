"""support_api: sync a customer-support REST API into any dlt destination, incrementally.

Tickets, comments, organizations, agents, groups, brands and customers merge on `id` and load
on their updated timestamps.

Two entry points share one path (`config.normalize_config` then `resources.build_resources`):

- `support_api(...)`: the source over the default catalogue, configured from `.dlt/` files,
  env vars or arguments.
- `support_api_from_config(config)`: a source from a dict written like a dlt
  `rest_api_source` config, including the keys plain dlt rejects (auth `oauth2`,
  `error_handler`, `limit` on a cursor paginator, offset paging without a total).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.typing import TSchemaContract
from dlt.extract import DltResource, DltSource
from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth

from .auth import OAuth2ClientCredentialsAuth, OAuth2RefreshTokenAuth
from .catalogue import catalogue_config, check_concurrency, window_plans
from .config import normalize_config
from .errors import (
    AuthenticationError,
    ConfigError,
    HTTPStatusError,
    PaginationError,
    ResponseError,
    SupportAPIError,
)
from .http_policy import RetryPolicy
from .resources import build_resources
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_START_DATE,
)

SupportAPICredentials = (
    OAuth2RefreshTokenAuth | OAuth2ClientCredentialsAuth | APIKeyAuth | BearerTokenAuth
)
"""Credential kinds, tried in this order when resolved from secrets."""


@dlt.source(name="support_api", section="support_api")
def support_api(
    base_url: str = dlt.config.value,
    credentials: SupportAPICredentials = dlt.secrets.value,
    resources: Sequence[str] | None = None,
    start_date: str | None = DEFAULT_START_DATE,
    end_date: str | None = None,
    page_size: int | None = None,
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS,
    error_handler: dict[str, Any] | None = None,
    endpoints: dict[str, Any] | None = None,
    file_format: str | None = "auto",
    parallelized: bool = True,
    allow_external_schedulers: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    allowed_hosts: Sequence[str] | None = None,
    allow_insecure_http: bool = False,
    settle_seconds: int = DEFAULT_SETTLE_SECONDS,
) -> list[DltResource]:
    """Loads the support desk: every resource merges on `id`, incrementally on `updated_at`.

    Args:
        base_url: API root, e.g. `https://api.example.com`.
        credentials: API key (query or header), bearer token, OAuth2 client credentials or
            OAuth2 refresh token, from `[sources.support_api.credentials]` in secrets.
        resources: Resources to load; all of the catalogue when None.
        start_date: Earliest updated timestamp loaded on a first run.
        end_date: Exclusive upper bound of the updated timestamp (backfill windows; nothing is
            remembered in state when set).
        page_size: Rows per page, sent by every paginator that can send one (100 when not
            set). Set, it is an error for a paginator that could send it only with a
            `limit_param` it was not given (next-link and header paginators).
        lookback_seconds: Seconds subtracted from the last loaded timestamp before asking the
            server for newer rows; rows seen again are merged, not duplicated.
        error_handler: Default retry rules for every endpoint: `retry_on_status_codes`,
            `max_retries`, `backoff_factor`, `max_retry_delay`, `timeout`.
        endpoints: Per-resource overrides, e.g. `{"tickets": {"path": "/api/v2/tickets",
            "cursor_field": "modifiedTime", "updated_since_param": "start_time"}}`.
        file_format: Load file format of every table. `auto` (default) uses parquet (else
            jsonl) when the active pipeline's destination would otherwise insert row by row;
            None leaves the choice to `pipeline.run(loader_file_format=...)`.
        parallelized: Extract the resources in parallel threads (one shared auth object).
        allow_external_schedulers: Take the window from an external scheduler (Airflow through
            `dlt deploy`, or `DLT_INTERVAL_START`/`DLT_INTERVAL_END`) instead of state; a run
            without a scheduler interval then fails. Cursors are compared as datetimes.
        concurrency: Most requests in flight at once per cursor-paged resource. The updated
            range is cut into time windows as the walk goes (`updated_since`/`updated_before`),
            each walked with its own cursor, while pages arrive slower than dlt takes them; a
            run whose first page is its last sends one request. 1 reads pages strictly one
            after another.
        allowed_hosts: Hosts besides `base_url`'s that may receive the credentials (`host` for
            every port, or `host:port`), e.g. where the API's next links or redirects point.
            A request to any other host is refused before it is sent.
        allow_insecure_http: Send the credentials over plain http to a host other than
            loopback (test rigs only; logs a warning).
        settle_seconds: Rows updated in the last `settle_seconds` are left for the next run
            (the bound goes to the API as `updated_before`), so the cursor kept in state
            never passes a change the API stamped but shows only when it commits. Per
            resource in `endpoints.<name>.settle_seconds`; ignored with `end_date`.

    Returns:
        The selected resources.
    """
    policy = RetryPolicy.from_config(error_handler or {}, "error_handler")
    config = catalogue_config(
        base_url=base_url,
        credentials=credentials,
        names=resources,
        start_date=start_date,
        end_date=end_date,
        page_size=page_size,
        lookback_seconds=lookback_seconds,
        overrides=endpoints,
        allow_external_schedulers=allow_external_schedulers,
        settle_seconds=settle_seconds,
    )
    config["client"] |= {"allowed_hosts": allowed_hosts, "allow_insecure_http": allow_insecure_http}
    normalized = normalize_config(config, default_policy=policy, client_path="")
    normalized.file_format = file_format
    normalized.parallelized = parallelized
    normalized.windows = window_plans(resources, endpoints, concurrency, allow_external_schedulers)
    normalized.concurrency = concurrency
    return build_resources(normalized)


@dlt.source(name="support_api", section="support_api")
def _configured_source(
    config: Any,
    parallelized: bool = True,
    file_format: str | None = "auto",
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[DltResource]:
    """The source of a rest_api-style dict (see `support_api_from_config`).

    The config is validated here, inside the source's config section, as plain dlt's
    `rest_api` does: credentials an auth block leaves out are looked up under
    `sources.<section>.<name>.credentials` (or reported missing with those keys).
    """
    normalized = normalize_config(config)
    normalized.parallelized = parallelized
    normalized.file_format = file_format
    normalized.concurrency = check_concurrency(concurrency)
    return build_resources(normalized)


def support_api_from_config(
    config: Mapping[str, Any],
    name: str | None = None,
    section: str | None = None,
    max_table_nesting: int | None = None,
    root_key: bool | None = None,
    schema: Schema | None = None,
    schema_contract: TSchemaContract | None = None,
    parallelized: bool = True,
    file_format: str | None = "auto",
    concurrency: int = DEFAULT_CONCURRENCY,
) -> DltSource:
    """Creates a source from a dict written like a dlt `rest_api_source` config.

    Accepts everything plain dlt accepts, with the same meaning, plus auth `"type": "oauth2"`
    (client credentials, or refresh token when `refresh_token` is given), an endpoint
    `error_handler`, `limit` on a cursor paginator and offset paging without a total (stops
    on a short or empty page). The whole config is validated before anything is requested.

    Args:
        config: The config dict (`client`, `resources`, `resource_defaults`).
        name: Source name; `support_api` by default.
        section: Config section; `support_api` by default.
        max_table_nesting: As in `rest_api_source`.
        root_key: As in `rest_api_source`.
        schema: As in `rest_api_source`.
        schema_contract: As in `rest_api_source`.
        parallelized: Extract resources in parallel threads (they share one auth object);
            a resource's own `parallelized` key wins.
        file_format: As in `support_api`.
        concurrency: Most requests in flight at once per resource: the children of a
            dependent resource's parents, or the time windows of a cursor walk whose
            incremental has a `start_param` and an `end_param`. 1 reads one request after
            another, in the order plain dlt sends them.

    Returns:
        The dlt source.

    Raises:
        ConfigError: Naming the key path of the first problem, with secrets masked.
    """
    options: dict[str, Any] = {
        "name": name,
        "section": section,
        "max_table_nesting": max_table_nesting,
        "root_key": root_key,
        "schema": schema,
        "schema_contract": schema_contract,
    }
    source = _configured_source.clone(**{k: v for k, v in options.items() if v is not None})
    return source(
        config, parallelized=parallelized, file_format=file_format, concurrency=concurrency
    )


def support_api_resources(
    config: Mapping[str, Any], parallelized: bool = False, file_format: str | None = "auto"
) -> list[DltResource]:
    """Creates the resources of a rest_api-style dict, as dlt's `rest_api_resources` does.

    The resources of `support_api_from_config`, without a source around them: to combine
    with other resources in a `@dlt.source` of your own.

    Args:
        config: The config dict (`client`, `resources`, `resource_defaults`).
        parallelized: Extract resources that set no `parallelized` in parallel threads
            (off by default, as `rest_api_resources` leaves them).
        file_format: As in `support_api`.

    Returns:
        The resources, parents before their children (as `rest_api_resources` orders them).

    Raises:
        ConfigError: Naming the key path of the first problem, with secrets masked.
    """
    normalized = normalize_config(config)
    normalized.parallelized = parallelized
    normalized.file_format = file_format
    return build_resources(normalized)


__all__ = [
    "AuthenticationError",
    "ConfigError",
    "HTTPStatusError",
    "OAuth2ClientCredentialsAuth",
    "OAuth2RefreshTokenAuth",
    "PaginationError",
    "ResponseError",
    "SupportAPIError",
    "support_api",
    "support_api_from_config",
    "support_api_resources",
]
