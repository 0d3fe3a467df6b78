"""One internal form for every way of describing the API, validated before any request.

A seed-style dict (written like a dlt `rest_api_source` config, plus the keys plain dlt lacks:
auth `"type": "oauth2"`, an endpoint `error_handler`, `limit` on a cursor paginator, offset
paging without a total) and the `support_api` catalogue are both turned into a
`NormalizedConfig`: a plain dlt rest_api config whose auth is an instance, whose paginators
are support_api paginator configs, and whose retry policy is known per resource. Resources are
then built from it in one place (`resources.py`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, get_type_hints
from urllib.parse import urlsplit

from dlt.common import jsonpath
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
)
from dlt.common.configuration.specs.base_configuration import is_hint_not_resolvable
from dlt.common.exceptions import DictValidationException
from dlt.common.validation import validate_dict
from dlt.extract import DltResource
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.rest_api.config_setup import AUTH_MAP, create_auth
from dlt.sources.rest_api.typing import (
    ClientConfig,
    Endpoint,
    EndpointResource,
    EndpointResourceBase,
)
from jsonpath_ng import JSONPath
from requests.auth import AuthBase

from .auth import OAuth2ClientCredentialsAuth, OAuth2RefreshTokenAuth
from .errors import ConfigError
from .http_policy import RetryPolicy
from .origins import OriginPolicy
from .paginators import paginator_class, paginator_types
from .redaction import is_sensitive_header, mask
from .settings import DEFAULT_CONCURRENCY, DEFAULT_SETTLE_SECONDS, MAX_SETTLE_SECONDS
from .settle import Settle
from .windows import WindowPlan

TOP_LEVEL_KEYS = frozenset({"client", "resources", "resource_defaults"})
OAUTH2_KEYS_REQUIRED = ("client_id", "client_secret", "token_url")
SECRET_KEYS = frozenset(
    {
        "api_key",
        "token",
        "password",
        "client_secret",
        "client_id",
        "refresh_token",
        "access_token",
        "private_key",
        "private_key_passphrase",
    }
)


@dataclass
class NormalizedConfig:
    """A config ready to build resources from.

    Attributes:
        client: dlt `ClientConfig` with `auth` as a shared instance and no `paginator` dicts
            left for dlt to interpret.
        resource_defaults: dlt `resource_defaults` without `error_handler` and `paginator`
            (those are resolved per resource).
        resources: Resource entries with `endpoint` as a dict, their paginator config and
            error handler already taken out.
        paginators: Paginator config per resource name (None: dlt's detection).
        policies: Retry policy per resource name.
        client_paginator: The client-level paginator config, used where a resource sets none.
        uses_client_paginator: Resources whose endpoint and defaults set no paginator (or
            None, or `auto`): dlt pages them with the client's, or as a single entity.
        file_format: Load file format hint for resources that set none: `auto` picks a bulk
            format (parquet, else jsonl) when the active pipeline's destination would
            otherwise insert row by row; None leaves it to `pipeline.run(loader_file_format=)`.
        parallelized: Extract resources that set no `parallelized` in parallel threads.
        concurrency: Most parents whose children a dependent resource reads at once.
        windows: Resources read in concurrent time windows of their updated timestamp (the
            catalogue's cursor-paged endpoints that filter on it), by name.
        origins: Where requests may carry the credentials (`base_url`'s origin and
            `allowed_hosts`).
        settle: Settle margin of each resource with an incremental cursor, by name (see
            `settle.py`); resources without one, or with a margin of 0, are not listed.
    """

    client: dict[str, Any]
    resource_defaults: dict[str, Any]
    resources: list[dict[str, Any] | DltResource]
    paginators: dict[str, Mapping[str, Any] | BasePaginator | None] = field(default_factory=dict)
    policies: dict[str, RetryPolicy] = field(default_factory=dict)
    client_paginator: Mapping[str, Any] | BasePaginator | None = None
    uses_client_paginator: set[str] = field(default_factory=set)
    file_format: str | None = "auto"
    parallelized: bool = True
    windows: dict[str, WindowPlan] = field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY
    origins: OriginPolicy | None = None
    settle: dict[str, Settle] = field(default_factory=dict)

    def _request_settings(self) -> list[Mapping[str, Any]]:
        """The client and every endpoint block, where auth and headers may be set."""
        blocks: list[Mapping[str, Any]] = [
            self.client,
            self.resource_defaults.get("endpoint") or {},
        ]
        blocks.extend(r["endpoint"] for r in self.resources if isinstance(r, dict))
        return blocks

    def auths(self) -> list[AuthBase]:
        """Every auth object of the config: the client's, the defaults' and the endpoints'."""
        found = (block.get("auth") for block in self._request_settings())
        return [auth for auth in found if isinstance(auth, AuthBase)]

    def sends_credentials(self) -> bool:
        """Whether requests carry credentials: an auth object, or a header holding a secret."""
        return bool(self.auths()) or any(
            is_sensitive_header(str(name))
            for block in self._request_settings()
            for name in block.get("headers") or {}
        )


SETTLE_KEY: Final = "settle_seconds"
"""Key of an endpoint's `incremental` block holding its settle margin (support_api's own)."""


def check_settle_seconds(value: Any, key_path: str) -> int:
    """Checks a settle margin: whole seconds from 0 to `MAX_SETTLE_SECONDS`.

    Args:
        value: The configured value.
        key_path: Where it sits in the config.

    Returns:
        The value.

    Raises:
        ConfigError: When it is not such an integer.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(key_path, f"expected an integer >= 0 (seconds), got `{value!r}`.")
    if value > MAX_SETTLE_SECONDS:
        raise ConfigError(
            key_path,
            f"expected at most {MAX_SETTLE_SECONDS} seconds (a day), got `{value!r}`;"
            " the margin is in seconds, not milliseconds.",
        )
    return value


def _take_settle(
    endpoint: dict[str, Any], key_path: str, default: int | None
) -> tuple[int | None, bool]:
    """Takes `settle_seconds` out of an endpoint's `incremental` block (dlt rejects the key).

    Args:
        endpoint: The endpoint config (its `incremental` block is replaced by a copy).
        key_path: Where the endpoint sits in the config.
        default: The margin when the block sets none.

    Returns:
        The margin (`default` when the block sets none) and whether the block set it.
    """
    incremental = endpoint.get("incremental")
    if not isinstance(incremental, Mapping) or SETTLE_KEY not in incremental:
        return default, False
    block = dict(incremental)
    seconds = check_settle_seconds(block.pop(SETTLE_KEY), f"{key_path}.incremental.{SETTLE_KEY}")
    endpoint["incremental"] = block
    return seconds, True


def _settle_of(
    name: str,
    endpoint: Mapping[str, Any],
    default_endpoint: Mapping[str, Any],
    seconds: int | None,
    explicit: bool,
) -> dict[str, Settle]:
    """The settle margin of a resource with a cursor kept in state, by its name (or nothing).

    A cursor kept in state is one from an `incremental` block without an `end_value`, or an
    incremental query parameter; the bound goes to the server as the block's `end_param`.
    """
    incremental = endpoint.get("incremental")
    default = default_endpoint.get("incremental")
    if isinstance(default, Mapping):
        # dlt merges the defaults' block into the resource's
        incremental = {**default, **incremental} if isinstance(incremental, Mapping) else default
    params = endpoint.get("params") or {}
    in_params = any(
        isinstance(value, Mapping) and value.get("type") == "incremental"
        for value in params.values()
    )
    if isinstance(incremental, Mapping):
        if incremental.get("end_value") is not None:
            return {}  # a window: no state to protect
        before = incremental.get("end_param")
    elif in_params:
        before = None
    else:
        return {}
    if seconds is None:
        seconds = DEFAULT_SETTLE_SECONDS
    if seconds == 0:
        return {}
    return {
        name: Settle(
            seconds=seconds,
            before_param=before if isinstance(before, str) and before else None,
            epoch_numbers=explicit,
        )
    }


def copy_structure(value: Any, *, masked: bool = False) -> Any:
    """Copies dicts and lists, not the objects in them (auth objects, paginators, resources).

    dlt writes into an endpoint's `params` while paging (the incremental parameters), so every
    resource needs dicts of its own, never ones shared through `resource_defaults`.

    Args:
        value: A config or part of one.
        masked: Replace string values of secret keys by a masked form (for messages).

    Returns:
        The copy.
    """
    if isinstance(value, dict):
        return {
            k: (
                mask(v)
                if masked and k in SECRET_KEYS and isinstance(v, str)
                else copy_structure(v, masked=masked)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [copy_structure(v, masked=masked) for v in value]
    return value


def _require_mapping(value: Any, key_path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key_path, f"expected a mapping, got `{type(value).__name__}`.")
    return value


def _dlt_validate(spec: Any, value: Mapping[str, Any], key_path: str) -> None:
    """Validates with dlt's TypedDict validator and reports the innermost failing key."""
    try:
        validate_dict(spec, copy_structure(value, masked=True), path=_dlt_path(key_path))
    except DictValidationException as ex:
        inner = ex
        while inner.nested_exceptions:
            inner = inner.nested_exceptions[0]
        path = inner.path.removeprefix("./").replace("/", ".")
        accepted = None
        if inner.msg.startswith("received unexpected fields"):
            expected = inner.expected_type or _lookup_type(spec, path, key_path)
            if expected is not None:
                accepted = list(get_type_hints(expected))
            unexpected = inner.msg.split("`")[1].strip("{}'").split("', '")
            path = f"{path}.{unexpected[0]}"
        elif inner.field:
            path = f"{path}.{inner.field}"
        # dlt's own words (`Path ./client: ...`), as plain dlt raises them
        raise ConfigError(path, f"{ex}.", accepted=accepted) from None


def _dlt_path(key_path: str) -> str:
    """A key path (`resources[0].endpoint`) as dlt writes it (`./resources[0]/endpoint`)."""
    return "./" + key_path.replace(".", "/") if key_path else "."


def dlt_wording(key_path: str, value: Any, *, masked: bool = False) -> str | None:
    """What plain dlt's validation says about `value` at `key_path`, if it refuses it.

    Args:
        key_path: Where the value sits: `client.<key>`, or `<...>.endpoint.<key>`.
        value: The value as the user wrote it (secrets are masked here).
        masked: The secrets in `value` are masked already.

    Returns:
        dlt's message (`Path ./client: field paginator expects ...`), or None.
    """
    parent, _, name = key_path.rpartition(".")
    probe: dict[str, Any] = {"base_url": "https://api.example.com"} if parent == "client" else {}
    spec: Any = ClientConfig if parent == "client" else Endpoint
    probe[name] = copy_structure(value, masked=not masked)
    try:
        validate_dict(spec, probe, path=_dlt_path(parent))
    except DictValidationException as ex:
        return str(ex)
    return None


def _lookup_type(spec: Any, path: str, root: str) -> Any:
    """Finds the TypedDict at `path` below `spec`, for listing accepted keys."""
    current = spec
    for part in path.removeprefix(root).strip(".").split("."):
        if not part:
            continue
        hints = get_type_hints(current)
        if part not in hints:
            return None
        candidate = hints[part]
        args = [a for a in getattr(candidate, "__args__", ()) if isinstance(a, type)]
        typed = [a for a in args if hasattr(a, "__annotations__")]
        current = typed[0] if typed else candidate
    return current


def _validate_base_url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            "client.base_url", f"expected an http(s) URL string, got `{type(value).__name__}`."
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            "client.base_url",
            f"expected an absolute http(s) URL such as `https://api.example.com`, got"
            f" `{value.split('?')[0]}`.",
        )
    return value


def validate_paginator(
    value: Any, key_path: str, page_size: int | None = None, page_size_key: str | None = None
) -> Mapping[str, Any] | BasePaginator | None:
    """Checks a paginator config: its type, its keys and their combination.

    Args:
        value: A paginator type name, a config dict, a paginator instance or None.
        key_path: Where it sits in the config.
        page_size: Page size to use when the config sets none (catalogue resources), where
            the paginator can send one.
        page_size_key: Where `page_size` was set by the user, when it was: a paginator that
            could send it given a parameter name but has none is then an error, not a page
            size silently ignored.

    Returns:
        The config as a dict (or the instance / None unchanged).

    Raises:
        ConfigError: On an unknown type or key, or arguments the paginator refuses.
    """
    if value is None or isinstance(value, BasePaginator):
        return value
    if isinstance(value, str):
        value = {"type": value}
    block = dict(_require_mapping(value, key_path))
    kind = block.get("type", "auto")
    if kind == "auto":
        if len(block) > 1:
            raise ConfigError(f"{key_path}.type", "`auto` takes no other keys.")
        return None
    cls = paginator_class(kind)
    if cls is None:
        raise _unknown_paginator(kind, key_path, value)
    params = inspect.signature(cls.__init__).parameters
    accepted = {name for name in params if name != "self"}
    for key in block:
        if key != "type" and key not in accepted:
            raise ConfigError(
                f"{key_path}.{key}", f"not a setting of the `{kind}` paginator.", accepted
            )
    if page_size is not None:
        _fill_page_size(block, params, key_path, page_size, page_size_key)
    for key in ("limit", "page_size"):
        if key in block and (
            not isinstance(block[key], int) or isinstance(block[key], bool) or block[key] <= 0
        ):
            raise ConfigError(
                f"{key_path}.{key}", f"expected a positive integer, got `{block[key]!r}`."
            )
    if kind == "offset" and "limit" not in block:
        raise ConfigError(f"{key_path}.limit", "the `offset` paginator needs a page size.")
    try:
        make_paginator(block)
    except (TypeError, ValueError) as ex:
        raise ConfigError(
            key_path, f"the `{kind}` paginator refused these settings: {ex}"
        ) from None
    return block


def _fill_page_size(
    block: dict[str, Any],
    params: Mapping[str, inspect.Parameter],
    key_path: str,
    page_size: int,
    page_size_key: str | None,
) -> None:
    """Sets the source's page size in a paginator block that sets none, where it can be sent.

    A paginator whose size parameter has no default name (the link paginators) sends it only
    with a `limit_param`; when the user set the page size and there is none, that is an error
    naming what would work, not a page size silently ignored.
    """
    kind = block["type"]
    if "limit" in params and "limit" not in block:
        # a paginator with no `limit_param` at all (a registered one) sends its size itself
        limit_param = params.get("limit_param")
        if limit_param is None or limit_param.default or block.get("limit_param"):
            block["limit"] = page_size
        elif page_size_key is not None:
            raise ConfigError(
                f"{key_path}.limit_param",
                f"`{page_size_key}` = {page_size} cannot be sent by the `{kind}` paginator"
                " without the name of the query parameter the API reads the page size from:"
                f" set `limit_param` (e.g. `page_size`, `per_page`), or leave `{page_size_key}`"
                " unset.",
            )
    elif "page_size" in params and "page_size" not in block:
        block["page_size"] = page_size


def _unknown_paginator(kind: str, key_path: str, value: Any) -> ConfigError:
    """The error for a paginator `type` neither support_api nor dlt's registry knows."""
    problem = f"unknown paginator type `{kind}`."
    if (dlt_says := dlt_wording(key_path, value)) is not None:
        problem += f" {dlt_says}"
    return ConfigError(f"{key_path}.type", problem, [*paginator_types(), "auto"])


def make_paginator(config: Mapping[str, Any] | BasePaginator | None) -> BasePaginator | None:
    """Builds a fresh paginator from a validated config (instances are used as they are).

    Args:
        config: The output of `validate_paginator`.

    Returns:
        A new paginator, or None for dlt's detection.
    """
    if config is None or isinstance(config, BasePaginator):
        return config
    kwargs = {
        key: _compiled_path(value) if key in _JSON_PATH_KEYS and isinstance(value, str) else value
        for key, value in config.items()
        if key != "type"
    }
    cls = paginator_class(config["type"])
    if cls is None:  # unregistered since it was validated
        raise ConfigError("paginator.type", f"unknown paginator type `{config['type']}`.")
    return cls(**kwargs)


_JSON_PATH_KEYS: Final = frozenset({"cursor_path", "has_more_path", "total_path", "next_url_path"})
"""Paginator settings dlt compiles as JSON paths (`cursor_body_path` it keeps as text)."""


@functools.lru_cache(maxsize=256)
def _compiled_path(path: str) -> JSONPath:
    """A JSON path compiled once per process.

    Each paginator is new per walk, and a cursor walk split into time windows makes one per
    window (37 for 50k desk tickets); jsonpath_ng builds its parser anew for each compile
    (about 0.45 ms). A compiled path is only read when matching, so walks in several threads
    can share it.
    """
    return jsonpath.compile_path(path)


_PLAIN_AUTH_KEYS: Final = frozenset({"type", "location", "name"})
"""Auth settings that hold no secret (shown unmasked in messages)."""


def normalize_auth(value: Any, key_path: str) -> AuthBase | None:
    """Turns an auth block into one shared, resolved auth object.

    Accepts every form plain dlt accepts, plus `"type": "oauth2"` (client credentials, or the
    refresh-token grant when `refresh_token` is given).

    Args:
        value: The auth block, type name, or instance.
        key_path: Where it sits in the config.

    Returns:
        An auth object, or None.

    Raises:
        ConfigError: On an unknown type, a missing or unknown key.
    """
    if value is None or isinstance(value, AuthBase):
        return value
    if isinstance(value, str):
        value = {"type": value}
    block = dict(_require_mapping(value, key_path))
    kind = block.pop("type", "bearer")
    if kind == "oauth2":
        cls: type[AuthConfigBase] = (
            OAuth2RefreshTokenAuth if block.get("refresh_token") else OAuth2ClientCredentialsAuth
        )
        if cls is OAuth2ClientCredentialsAuth:
            block.pop("refresh_token", None)
    elif kind in AUTH_MAP:
        cls = AUTH_MAP[kind]
    else:
        raise ConfigError(f"{key_path}.type", f"unknown auth type `{kind}`.", [*AUTH_MAP, "oauth2"])
    accepted = {
        name
        for name, hint in cls.get_resolvable_fields().items()
        if not is_hint_not_resolvable(hint)  # runtime-only fields (session, lock, clock)
    }
    for key in block:
        if key not in accepted:
            problem = f"not a setting of auth type `{kind}`."
            # any key may be a misspelt secret: only the ones naming a place stay readable
            shown = {
                k: v if k in _PLAIN_AUTH_KEYS or not isinstance(v, str) else mask(v)
                for k, v in value.items()
            }
            if (dlt_says := dlt_wording(key_path, shown, masked=True)) is not None:
                problem += f" {dlt_says}"
            raise ConfigError(f"{key_path}.{key}", problem, sorted(accepted))
    if kind == "oauth2":
        for key in OAUTH2_KEYS_REQUIRED:
            if not block.get(key):
                raise ConfigError(f"{key_path}.{key}", "required for `oauth2` auth but missing.")
    try:
        return create_auth(cls.from_init_value(block))
    except ConfigFieldMissingException:
        # as plain dlt raises it: naming the config keys tried (the source's section when
        # the config is normalized inside the source function)
        raise
    except (ConfigurationException, TypeError, ValueError) as ex:
        raise ConfigError(key_path, f"auth type `{kind}` could not be set up: {ex}") from None


def normalize_config(
    config: Mapping[str, Any],
    default_policy: RetryPolicy | None = None,
    client_path: str = "client",
) -> NormalizedConfig:
    """Validates a seed-style config and brings it to the internal form.

    Args:
        config: A dict written like a dlt `rest_api_source` config, with support_api's extras.
        default_policy: Retry policy for endpoints that set no `error_handler`.
        client_path: Where the user wrote the client settings (`base_url`, `allowed_hosts`,
            `allow_insecure_http`), for messages: `client` in a dict, nothing for the
            catalogue's `[sources.support_api]`.

    Returns:
        The normalized config.

    Raises:
        ConfigError: Naming the key path of the first problem found. Nothing is requested.
    """
    config = _require_mapping(config, "config")
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(str(key), "unknown top-level key.", TOP_LEVEL_KEYS)
    missing = [key for key in ("client", "resources") if key not in config]
    if missing:
        # dlt's words: `missing required fields `{'client'}``
        raise ConfigError(
            missing[0],
            f"missing required fields `{set(missing)!r}`: the config needs a `client` with a"
            " `base_url` and a list of `resources`.",
        )
    client = dict(_require_mapping(config["client"], "client"))
    # support_api's own client keys, which dlt's `ClientConfig` does not know
    allowed_hosts = client.pop("allowed_hosts", None)
    allow_insecure_http = client.pop("allow_insecure_http", None)
    client_paginator = validate_paginator(client.pop("paginator", None), "client.paginator")
    client["auth"] = normalize_auth(client.get("auth"), "client.auth")
    if "base_url" not in client:
        raise ConfigError("client.base_url", "missing.")
    _validate_base_url(client["base_url"])
    _dlt_validate(ClientConfig, client, "client")

    defaults = dict(_require_mapping(config.get("resource_defaults") or {}, "resource_defaults"))
    default_endpoint = dict(_require_mapping(defaults.get("endpoint") or {}, "resource_defaults"))
    policy = default_policy or RetryPolicy()
    if "error_handler" in default_endpoint:
        policy = RetryPolicy.from_config(
            default_endpoint.pop("error_handler"), "resource_defaults.endpoint.error_handler"
        )
    default_paginator = validate_paginator(
        default_endpoint.pop("paginator", None), "resource_defaults.endpoint.paginator"
    )
    if "auth" in default_endpoint:
        default_endpoint["auth"] = normalize_auth(
            default_endpoint["auth"], "resource_defaults.endpoint.auth"
        )
    default_settle, default_explicit = _take_settle(
        default_endpoint, "resource_defaults.endpoint", None
    )
    if default_endpoint:
        defaults["endpoint"] = default_endpoint
    else:
        defaults.pop("endpoint", None)
    _dlt_validate(EndpointResourceBase, defaults, "resource_defaults")

    resources = config.get("resources")
    if not isinstance(resources, Sequence) or isinstance(resources, str) or not resources:
        raise ConfigError("resources", "expected a non-empty list of resources.")
    result = NormalizedConfig(
        client=client,
        resource_defaults=defaults,
        resources=[],
        client_paginator=client_paginator,
    )
    has_default_paginator = "paginator" in _require_mapping(
        config.get("resource_defaults", {}).get("endpoint") or {}, "resource_defaults"
    )
    for index, entry in enumerate(resources):
        key_path = f"resources[{index}]"
        if isinstance(entry, DltResource):
            result.resources.append(entry)
            continue
        resource = _normalize_resource(entry, key_path)
        endpoint = resource["endpoint"]
        name = resource["name"]
        if name in result.policies:
            raise ConfigError(f"{key_path}.name", f"resource `{name}` is defined twice.")
        result.policies[name] = (
            RetryPolicy.from_config(
                endpoint.pop("error_handler"), f"{key_path}.endpoint.error_handler", policy
            )
            if "error_handler" in endpoint
            else policy
        )
        own = default_paginator if has_default_paginator else None
        if "paginator" in endpoint:
            own = validate_paginator(endpoint.pop("paginator"), f"{key_path}.endpoint.paginator")
        _set_paginator(result, name, own)
        if "auth" in endpoint:
            endpoint["auth"] = normalize_auth(endpoint["auth"], f"{key_path}.endpoint.auth")
        seconds, explicit = _take_settle(endpoint, f"{key_path}.endpoint", default_settle)
        result.settle |= _settle_of(
            name, endpoint, default_endpoint, seconds, explicit or default_explicit
        )
        _dlt_validate(EndpointResource, resource, key_path)
        _keep_newest_when_merging(resource, defaults)
        result.resources.append(resource)
    result.origins = OriginPolicy.from_config(
        client["base_url"],
        allowed_hosts,
        allow_insecure_http,
        result.sends_credentials(),
        client_path,
    )
    return result


def _set_paginator(
    result: NormalizedConfig, name: str, own: Mapping[str, Any] | BasePaginator | None
) -> None:
    """Records a resource's paginator: its own (endpoint or defaults), else the client's.

    Without one of its own (none, None or `auto`) a resource is paged as dlt pages it: with a
    copy of the client's paginator, or by dlt's detection, and a single-entity path
    (`users/{id}`) with dlt's single-page paginator.
    """
    if own is None:
        result.paginators[name] = result.client_paginator
        result.uses_client_paginator.add(name)
    else:
        result.paginators[name] = own


def top_level_cursor(resource: Mapping[str, Any], defaults: Mapping[str, Any]) -> str | None:
    """The resource's incremental cursor, when it is a top-level field of each record.

    Args:
        resource: A normalized resource entry.
        defaults: The config's `resource_defaults`.

    Returns:
        The field name; None without an incremental or for a nested cursor path.
    """
    default_endpoint = defaults.get("endpoint") or {}
    incremental = resource["endpoint"].get("incremental", default_endpoint.get("incremental"))
    cursor = incremental.get("cursor_path") if isinstance(incremental, Mapping) else None
    return cursor if isinstance(cursor, str) and cursor.isidentifier() else None


def _keep_newest_when_merging(resource: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Marks the incremental cursor as the column that picks the row a merge keeps.

    A record changed while a run reads it comes twice: before the change and after. dlt's
    `delete-insert` merge keeps one row per primary key, an arbitrary one unless a column
    has the `dedup_sort` hint. The older one would stay loaded, and the incremental state,
    already past the newer one, would not read it again. With `dedup_sort: desc` on the
    cursor, the newest version wins. A `dedup_sort` the config sets itself is kept.
    """
    disposition = resource.get("write_disposition", defaults.get("write_disposition"))
    if isinstance(disposition, Mapping):
        if disposition.get("strategy", "delete-insert") != "delete-insert":
            return
        disposition = disposition.get("disposition")
    if disposition != "merge" or not resource.get("primary_key", defaults.get("primary_key")):
        return
    cursor = top_level_cursor(resource, defaults)
    columns = resource.get("columns", defaults.get("columns")) or {}
    if cursor is None or not isinstance(columns, Mapping):
        return
    if any(isinstance(c, Mapping) and "dedup_sort" in c for c in columns.values()):
        return
    columns = {name: dict(hints) for name, hints in columns.items()}
    columns[cursor] = {**columns.get(cursor, {}), "dedup_sort": "desc"}
    resource["columns"] = columns


def _normalize_resource(entry: Any, key_path: str) -> dict[str, Any]:
    """Brings one resource entry to `{"name": ..., "endpoint": {...}}` form (dlt's meaning)."""
    if isinstance(entry, str):
        return {"name": entry, "endpoint": {"path": entry}}
    resource = dict(_require_mapping(entry, key_path))
    name = resource.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key_path}.name", "every resource needs a `name` string.")
    endpoint = resource.get("endpoint", {})
    if isinstance(endpoint, str):
        endpoint = {"path": endpoint}
    endpoint = dict(_require_mapping(endpoint, f"{key_path}.endpoint"))
    endpoint.setdefault("path", name)
    resource["endpoint"] = endpoint
    return resource


__all__ = [
    "NormalizedConfig",
    "copy_structure",
    "make_paginator",
    "mask",
    "normalize_auth",
    "normalize_config",
    "top_level_cursor",
    "validate_paginator",
]
