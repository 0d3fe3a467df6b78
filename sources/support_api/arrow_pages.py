"""Pages of records as arrow tables, where that loads exactly what dlt's row path would.

dlt normalizes dict rows one by one in Python; arrow tables it writes as parquet and loads
without touching each row. A batch of pages becomes an arrow table only when every column has
one type that dlt would give it on the row path:

- the type comes from the column hints, else from the table in the pipeline schema, else as
  dlt's normalizer infers it for a new column: the schema's preferred type for the name, else
  its type detections on the first value (ISO timestamps as `timestamp` by default), else the
  Python type (`bool`, `bigint`, `double`, `text`);
- a new column gets the hints the schema's default hints give its name, as on the row path
  (dlt's own make `_dlt_id` `unique` and the `row_key`); they reach dlt with the batch;
- every value must be of that type (an int in a `double` column is widened, as dlt does);
- `json` columns hold each value serialized as JSON text;
- names must already be normalized (snake_case);
- a new column takes the place the row path gives it: where its first value (not its first
  key) appears, and after `_dlt_load_id` and `_dlt_id` when that is not in the first record.

Anything else (a nested object without a `json` hint, a value of another type that dlt would
put in a variant column, a name dlt would rename, a nested list dlt makes a child table of, a
type the arrow path does not build such as a detected `date`, columns the table's filters
exclude) sends that batch down dlt's row path unchanged, so the result is the same either way,
only slower; the pages after it follow page by page, without another try.

The cursor column stays text until dlt's incremental step has filtered the batch (state keeps
comparing text, as on the row path); `finish_batch` then types it and adds `_dlt_load_id` and
`_dlt_id`, the columns the row path adds.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from itertools import chain, repeat
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, cast

import dlt
from dlt.common import json
from dlt.common import logger as dlt_logger
from dlt.common.exceptions import DltException
from dlt.common.normalizers.json.relational import DataItemNormalizer as RelationalNormalizer
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCase
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTypeDetections
from dlt.common.schema.utils import (
    autodetect_sc_type,
    compile_simple_regexes,
    has_default_column_prop_value,
    hint_to_column_prop,
)

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 2_000
"""Rows per arrow table: large enough that dlt's per-item work is spread thin (measured: as
fast as 5,000), small enough that the records waiting for a batch stay few (about 20 MB less
peak RSS than 5,000 on 1M tickets)."""

_COPY_ATTEMPTS: Final = 5
_DICT_ONLY: Final = frozenset((dict,))
_DEFAULT_NAMING: Final = SnakeCase()
LOAD_ID_COLUMN: Final = "_dlt_load_id"
ROW_ID_COLUMN: Final = "_dlt_id"
_TYPE_LATER: Final = {b"support_api": b"timestamp"}
"""Field metadata of a timestamp cursor kept as text until after the incremental step."""
_DLT_AT: Final = b"support_api_dlt_at"
"""Table metadata: where dlt's own columns go (the row path adds them with the first record)."""
_HINTS: Final = b"support_api_hints"
"""Table metadata: the column hints the row path would give the batch's new columns (JSON)."""
_PY_TYPES: Final[Mapping[type, str]] = {bool: "bool", int: "bigint", float: "double", str: "text"}
"""dlt's data type of each Python type the arrow path takes (`type(v)`, so a bool is no int)."""
_ARROW_TYPES: Final[Mapping[str, str]] = {
    "bigint": "int64",
    "double": "float64",
    "bool": "bool_",
    "text": "string",
    "json": "string",
}
"""pyarrow's type factory for each dlt data type the arrow path takes (and `timestamp`)."""


def _pyarrow() -> Any:
    """pyarrow, imported when a batch first becomes a table.

    A run into a destination that loads no parquet (Redshift, say) never loads it (about
    33 MB of RSS).
    """
    import pyarrow as pa  # noqa: PLC0415 - deferred on purpose, see above
    import pyarrow.compute  # noqa: PLC0415 - loads `pa.compute`, used through `pa`

    return pa


def import_pyarrow() -> None:
    """Imports pyarrow now, on the calling thread (see `resources.import_pyarrow_for_run`)."""
    _pyarrow()


def is_arrow_table(item: Any) -> bool:
    """Whether `item` is a pyarrow table (without importing pyarrow when nothing has).

    Another thread may be importing pyarrow: its module is then in `sys.modules` without
    `Table` yet, and no table can have been made.
    """
    table_type = getattr(sys.modules.get("pyarrow"), "Table", None)
    return table_type is not None and isinstance(item, table_type)


def _timestamp(lib: ModuleType) -> Any:
    """The arrow type dlt gives a `timestamp` column: microseconds, UTC."""
    return lib.timestamp("us", tz="UTC")


_HINTS_WARNING: Final = "when merging arrow schema with dlt schema"
"""What follows `In resource: <name>, ` in the warning of dlt's arrow extractor."""


class _JsonAsTextWarnings(logging.Filter):
    """Drops dlt's warning about a batch whose only differing hint is a `json` column as text.

    dlt's row path writes `json` columns to parquet as JSON text, and so does `ArrowBatches`.
    dlt's arrow extractor reads arrow text as `text`, finds that the resource's `json` hint
    differs, keeps the hint (the column stays `json`) and warns that "several column hints
    were different", on every batch. `finish_batch` announces a batch where that is the only
    difference, and its warning is dropped; a batch with any other difference still warns.
    """

    def __init__(self) -> None:
        super().__init__()
        self._expected: set[str] = set()
        self._lock = threading.Lock()

    def expect(self, resource_name: str) -> None:
        """Announces the next hints warning of `resource_name` as json-as-text only.

        The filter is on dlt's logger from the first announcement on (dlt creates that
        logger when a pipeline starts, under the name its runtime config gives).
        """
        logger = dlt_logger.LOGGER
        if logger is not None and self not in logger.filters:
            logger.addFilter(self)
        with self._lock:
            self._expected.add(resource_name)

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to log `record`: all but an announced warning."""
        if record.levelno != logging.WARNING or not self._expected:
            return True
        message = record.getMessage()
        with self._lock:
            for name in self._expected:
                if message.startswith(f"In resource: {name}, {_HINTS_WARNING}"):
                    self._expected.discard(name)
                    return False
        return True


JSON_AS_TEXT_WARNINGS: Final = _JsonAsTextWarnings()
"""The filter on dlt's logger (added at the first batch announced to it)."""


def only_json_as_text_differs(table: pa.Table, hints: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether dlt will warn about `table` only because `json` columns are arrow text.

    Compares the hints dlt derives from the arrow schema with the resource's column hints as
    dlt's arrow extractor does: a hint present on both sides that differs.

    Args:
        table: An arrow batch.
        hints: The resource's column hints.

    Returns:
        True when some `json` column is text and nothing else differs.
    """
    from dlt.common.libs.pyarrow import (  # noqa: PLC0415 - imports pyarrow, here at hand
        py_arrow_to_table_schema_columns,
    )

    json_as_text = False
    for name, column in py_arrow_to_table_schema_columns(table.schema).items():
        hint = hints.get(name)
        if not hint:
            continue
        for key, value in column.items():
            declared = hint.get(key)
            if declared is None or declared == value:
                continue
            if key == "data_type" and declared == "json" and value == "text":
                json_as_text = True
                continue
            return False
    return json_as_text


class NotFaithful(ValueError):  # noqa: N818 - a condition, not an error shown to users
    """A batch that arrow would not load exactly as dlt's row path would."""


def _infer(
    value: Any,
    detections: Sequence[TTypeDetections],
    preferred: str | None,
    nested_as_json: bool = False,
) -> str | None:
    """The data type dlt's row path gives a new column, from its first value and its name.

    As dlt's normalizer infers it: the schema's preferred type for the name, else the first of
    the schema's type detections that matches (`iso_timestamp` by default), else the value's
    Python type. A nested object or list is `json` where the row path keeps it whole. None for
    a type the arrow path does not take (an epoch number detected as a `timestamp`, a `date`,
    a nested value the row path flattens...).
    """
    kind = type(value)
    if kind is dict or kind is list:
        # kept whole by a preferred `json` type or below the table's nesting level (where
        # another preferred type would coerce it); else the row path flattens an object and
        # makes a child table of a list
        if preferred == "json" or (preferred is None and nested_as_json):
            return "json"
        return None
    # dlt annotates the detection's result without None, which it returns when none matches
    detected = cast("str | None", autodetect_sc_type(detections, kind, value))
    data_type = preferred or detected or _PY_TYPES.get(kind)
    if data_type == "timestamp" and kind is not str:
        return None  # the row path converts the number; arrow would keep it
    return data_type if data_type in _ALLOWED else None


HintRules = list[tuple[str, re.Pattern[str]]]
"""The schema's default hints: each hint with its column name patterns, compiled."""


def default_hint_rules(schema: Schema | None) -> HintRules:
    """Compiles the schema's `default_hints` (dlt's own mark its `_dlt_*` columns)."""
    if schema is None:
        return []
    hints = schema.settings.get("default_hints") or {}
    return [(hint, compile_simple_regexes(names)) for hint, names in hints.items() if names]


def inferred_props(rules: HintRules, name: str) -> dict[str, Any]:
    """The column properties dlt's row path gives a new column `name` from the default hints.

    `not_null` as `nullable: False`, the others (`unique`, `row_key`, `partition`...) as
    `True`; a property at its default value is left out, as dlt leaves it out.
    """
    props: dict[str, Any] = {}
    for hint, pattern in rules:
        if pattern.search(name):
            prop = hint_to_column_prop(hint)  # type: ignore[arg-type]
            value = hint != "not_null"
            if not has_default_column_prop_value(prop, value):
                props[prop] = value
    return props


_ALLOWED: Final[Mapping[str, frozenset[type]]] = {
    # objects and lists only: the row path treats a scalar in a json column its own way
    "json": frozenset((dict, list, type(None))),
    "bigint": frozenset((int, type(None))),
    "double": frozenset((float, int, type(None))),  # an int is widened, as dlt does
    "bool": frozenset((bool, type(None))),
    "text": frozenset((str, type(None))),
    "timestamp": frozenset((str, type(None))),
}
"""The Python types (`type(v)`, so a bool is no int) each data type's column may hold."""


def _check(values: list[Any], data_type: str) -> None:
    """Raises `NotFaithful` unless every value is of the column's data type (None aside)."""
    allowed = _ALLOWED.get(data_type)
    if allowed is None or not allowed.issuperset(map(type, values)):
        raise NotFaithful(data_type)


def _build(lib: ModuleType, values: list[Any], data_type: str, keep_text: bool) -> pa.Array:
    """The arrow array of a column `_check` passed, or `NotFaithful` (e.g. beyond bigint)."""
    try:
        if data_type == "json":
            # dlt's serializer, as its parquet writer calls it. As text, not bytes: keeping
            # thousands of orjson's bytes costs a fresh 1 KB buffer each (2 µs a value)
            dumped = [None if v is None else json.dumps(v) for v in values]
            return lib.array(dumped, type=lib.string())
        if data_type == "timestamp":
            text = lib.array(values, type=lib.string())
            return text if keep_text else lib.compute.cast(text, _timestamp(lib))
        return lib.array(values, type=getattr(lib, _ARROW_TYPES[data_type])())
    except (lib.ArrowInvalid, lib.ArrowTypeError, OverflowError) as ex:
        raise NotFaithful(data_type) from ex


_Column = tuple[tuple[int, int], str, list[Any], str]
"""A checked column: its place (first record with a value, key position), name, values, type."""


@dataclass
class _BatchContext:
    """What the pipeline schema says about the table, read once per batch.

    Attributes:
        schema: The pipeline schema (None outside a pipeline).
        naming: Its naming convention.
        detections: Its type detections.
        rules: Its default hints, compiled.
        known: The table's columns in it.
        types: Data type by known column (schema, then the resource's hints).
        required: Columns that may not be null.
        nested_as_json: Whether the row path keeps nested values whole, as `json` (a
            `max_nesting` of 0), rather than flattening them and making child tables.
        new_props: Hints the row path gives the batch's new columns (filled while checking).
    """

    schema: Schema | None
    naming: Any
    detections: Sequence[TTypeDetections]
    rules: HintRules
    known: Mapping[str, Mapping[str, Any]]
    types: dict[str, str | None]
    required: set[str]
    nested_as_json: bool = False
    new_props: dict[str, dict[str, Any]] = dataclass_field(default_factory=dict)


class ArrowBatches:
    """Turns record batches of one table into arrow tables (or leaves them as records).

    Attributes:
        table: Table the batches load into.
        cursor_field: Column kept as text until `finish_batch` (None: no incremental).
        hints: Column hints of the resource.
        schema: Returns the pipeline schema being extracted into (None outside a pipeline).
    """

    def __init__(
        self,
        table: str,
        cursor_field: str | None,
        hints: Mapping[str, Mapping[str, Any]],
        schema: Callable[[], Schema | None],
        primary_key: Sequence[str] = (),
        max_nesting: Callable[[], int | None] = lambda: None,
    ) -> None:
        """Remembers what decides each column's type.

        Args:
            table: Table the batches load into.
            cursor_field: The incremental cursor column, None without an incremental.
            hints: The resource's column hints.
            schema: The pipeline schema, read at every batch (it grows as batches are
                extracted).
            primary_key: The resource's primary key columns: not nullable, as dlt makes them.
            max_nesting: Returns the resource's `max_table_nesting` (None: not set), read at
                every batch (a pipeline script may set it after the source is built).
        """
        self.table = table
        self.cursor_field = cursor_field
        self.hints = hints
        self.schema = schema
        self.primary_key = tuple(primary_key)
        self.max_nesting = max_nesting
        self._json_found: set[str] = set()
        """Columns found to be `json` (nested values kept whole), declared to dlt."""
        self._made: dict[str, str] = {}
        """Type of each column of the tables made so far: dlt may not have added an earlier
        table's new columns to the schema yet when the next batch is converted."""

    def _known(self, schema: Schema | None) -> Mapping[str, Mapping[str, Any]]:
        """The table's columns in the schema, copied (another thread may be adding some)."""
        if schema is None:
            return {}
        for _ in range(_COPY_ATTEMPTS):
            try:
                table = schema.tables.get(self.table)
                return dict(table["columns"]) if table else {}
            except RuntimeError:  # changed size during the copy
                continue
        raise NotFaithful("schema")

    def _filtered(self, schema: Schema) -> bool:
        """Whether the schema excludes columns of the table (its `filters`)."""
        table = schema.tables.get(self.table)
        filters = table.get("filters") if table else None
        return bool(filters and filters.get("excludes"))

    def _types(
        self, known: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, str | None], set[str]]:
        """Data type by known column, and the columns declared not nullable.

        A column's type comes from the schema, else the resource's hints, else the tables
        made already.
        """
        types: dict[str, str | None] = {}
        required: set[str] = set(self.primary_key)
        for columns in (known, self.hints):
            for name, column in columns.items():
                data_type = column.get("data_type")
                if name not in types or types[name] is None:
                    types[name] = data_type
                if column.get("nullable") is False:
                    required.add(name)
        for name, made in self._made.items():
            if types.get(name) is None:
                types[name] = made
        return types, required

    def _context(self) -> _BatchContext:
        """What the pipeline schema says about the table, read once per batch."""
        schema = self.schema()
        if schema is not None and self._filtered(schema):
            # the row path drops the excluded columns; dlt's arrow path keeps them
            raise NotFaithful("filters")
        known = self._known(schema)
        types, required = self._types(known)
        return _BatchContext(
            schema=schema,
            naming=schema.naming if schema is not None else _DEFAULT_NAMING,
            detections=(schema.settings.get("detections") or []) if schema is not None else [],
            rules=default_hint_rules(schema),
            known=known,
            types=types,
            required=required,
            nested_as_json=self._nesting(schema) == 0,
        )

    def _declared_json(self, name: str) -> bool:
        """Whether the resource declares column `name` `json` (its hints, or found so)."""
        return self.hints.get(name, {}).get("data_type") == "json" or name in self._json_found

    def _nesting(self, schema: Schema | None) -> int | None:
        """The `max_nesting` dlt's normalizer applies to the table (None: unknown).

        The table's own (`x-normalizer`, from the resource's `max_table_nesting`), else the
        source's (the schema's normalizer config).
        """
        if schema is None:
            return None
        table: Mapping[str, Any] = schema.tables.get(self.table) or {}
        level = (table.get("x-normalizer") or {}).get("max_nesting")
        if level is None:
            level = self.max_nesting()
        if level is None:
            try:
                level = RelationalNormalizer.get_normalizer_config(schema).get("max_nesting")
            except DltException:  # another normalizer: its nesting is not known here
                return None
        return cast("int | None", level)

    def _new_column(
        self, context: _BatchContext, name: str, values: list[Any], records: list[Any]
    ) -> tuple[str, tuple[int, int]] | None:
        """The type and place the row path gives a column the table does not have yet.

        None while it has no value (the row path creates no column either). Its hints from
        the schema's default hints go to `context.new_props`.
        """
        props = inferred_props(context.rules, name)
        if props.pop("nullable", True) is False:
            context.required.add(name)
        at = next((i for i, v in enumerate(values) if v is not None), None)
        if at is None:
            if name in context.required:
                raise NotFaithful(name)  # the row path reports the null
            return None
        schema = context.schema
        preferred = schema.get_preferred_type(name) if schema is not None else None
        data_type = _infer(values[at], context.detections, preferred, context.nested_as_json)
        if data_type is None:
            raise NotFaithful(name)
        if props:
            context.new_props[name] = props
        # the row path adds a column at its first value, not at its first key
        return data_type, (at, list(records[at]).index(name))

    def to_arrow(self, records: list[Any]) -> pa.Table:
        """Converts one batch.

        Args:
            records: Dict records of one page or more.

        Returns:
            The table; the cursor column as text.

        Raises:
            NotFaithful: If the row path would load the batch differently.
        """
        context = self._context()
        types, required = context.types, context.required
        names: dict[str, None] = dict.fromkeys(n for n in types if not n.startswith("_dlt"))
        if not _DICT_ONLY.issuperset(map(type, records)):
            raise NotFaithful("record")
        names.update(dict.fromkeys(chain.from_iterable(records)))  # in order of appearance
        # every column is checked before pyarrow is needed: records it would not take
        # (nested lists, most often) leave without it being imported
        checked: list[_Column] = []
        for position, name in enumerate(names):
            if name.startswith("_dlt") or context.naming.normalize_identifier(name) != name:
                raise NotFaithful(name)
            values = list(map(dict.get, records, repeat(name)))
            data_type = types.get(name)
            order = (-1, position)
            if data_type is None:
                new = self._new_column(context, name, values, records)
                if new is None:
                    continue
                data_type, order = new
            if (name == self.cursor_field or name in required) and None in values:
                # the row path applies the incremental's `on_cursor_value_missing` to a
                # missing cursor, and reports a null key where dlt finds it
                raise NotFaithful(name)
            _check(values, data_type)
            if data_type == "json" and not self._declared_json(name):
                # dlt reads arrow text as `text`: the resource declares it `json` (a column
                # found `json` in this run, or in the schema from an earlier one)
                context.new_props.setdefault(name, {})["data_type"] = "json"
            checked.append((order, name, values, data_type))
        if self.cursor_field is not None and self.cursor_field not in names:
            raise NotFaithful(self.cursor_field)
        return self._assemble(context, checked)

    def _assemble(self, context: _BatchContext, checked: list[_Column]) -> pa.Table:
        """The table of the checked columns, in the row path's column order."""
        checked.sort(key=lambda column: column[0])
        lib = _pyarrow()
        arrays: list[pa.Array] = []
        fields: list[pa.Field] = []
        for _, name, values, data_type in checked:
            is_cursor = name == self.cursor_field
            array = _build(lib, values, data_type, keep_text=is_cursor)
            # a cursor kept as text is typed in `finish_batch`, after the incremental step
            metadata = _TYPE_LATER if is_cursor and data_type == "timestamp" else None
            # declared not nullable: say so in arrow too (dlt warns on differing hints)
            nullable = name not in context.required
            fields.append(lib.field(name, array.type, nullable=nullable, metadata=metadata))
            arrays.append(array)
        # the row path adds `_dlt_load_id` and `_dlt_id` with the first record's columns
        dlt_at = sum(1 for order, _, _, _ in checked if order[0] < 1)
        table_metadata: dict[bytes, str] = {_DLT_AT: str(dlt_at)}
        for own in (LOAD_ID_COLUMN, ROW_ID_COLUMN):
            props = inferred_props(context.rules, own)
            props.pop("nullable", None)  # dlt's columns are never null
            known = context.known.get(own, {})
            if any(known.get(prop) != value for prop, value in props.items()):
                context.new_props[own] = props
        if context.new_props:
            table_metadata[_HINTS] = json.dumps(context.new_props)
        schema = lib.schema(fields, metadata=table_metadata)
        table: pa.Table = lib.Table.from_arrays(arrays, schema=schema)
        self._made.update((name, data_type) for _, name, _, data_type in checked)
        return table

    def batches(self, pages: Iterable[list[Any]], rows: int | None = None) -> Iterator[Any]:
        """Yields arrow tables of about `rows` rows, or a batch as records where arrow won't do.

        Args:
            pages: Lists of records.
            rows: Rows per batch (None: `BATCH_ROWS`).

        Yields:
            `pyarrow.Table` or the batch's list of records.
        """
        rows = BATCH_ROWS if rows is None else rows
        pending: list[Any] = []
        pages = iter(pages)
        for page in pages:
            pending.extend(page)
            if len(pending) >= rows:
                converted = self._convert(pending)
                yield converted
                pending = []
                if not is_arrow_table(converted):
                    # the table's records are not arrow's to load (nested data, mixed types):
                    # the rest go page by page, as dlt's row path takes them
                    yield from pages
                    return
                # the batch before is written by now: hand what arrow's allocator keeps
                # cached back to the system, or RSS stays at the high-water mark into the load
                _pyarrow().default_memory_pool().release_unused()
        if pending:
            yield self._convert(pending)
        if "pyarrow" in sys.modules:
            _pyarrow().default_memory_pool().release_unused()

    def _convert(self, records: list[Any]) -> Any:
        try:
            return self.to_arrow(records)
        except NotFaithful:
            return records

    def finish_with_hints(self, item: Any) -> Any:
        """The step after the incremental one: `finish_batch`, with the new columns' hints.

        The row path gives a new column the schema's default hints that match its name (dlt's
        own: `_dlt_id` is `unique` and the `row_key`); dlt's arrow extractor reads only the
        arrow schema. The hints go to the resource with the table (`dlt.mark.with_hints`),
        which merges them into the columns where the table has them.

        Args:
            item: An arrow table from `batches` (records pass through).

        Returns:
            The finished table, with its hints where it has new columns.
        """
        if not is_arrow_table(item):
            return item
        hints = (item.schema.metadata or {}).get(_HINTS)
        columns = [{"name": name, **props} for name, props in json.loadb(hints or b"{}").items()]
        # before `finish_batch`: it announces the warning dlt gives a json column as text
        self._json_found.update(c["name"] for c in columns if c.get("data_type") == "json")
        finished = self.finish_batch(item)
        if not columns or not is_arrow_table(finished):
            return finished
        return dlt.mark.with_hints(finished, dlt.mark.make_hints(columns=columns))

    def finish_batch(self, item: Any) -> Any:
        """Types the cursor of a batch after the incremental step, adds dlt's columns.

        Args:
            item: An arrow table from `batches` (records pass through).

        Returns:
            The table with the cursor as a UTC timestamp, `_dlt_load_id` and `_dlt_id`.
        """
        if not is_arrow_table(item):
            return item
        lib = _pyarrow()
        index = -1 if self.cursor_field is None else item.schema.get_field_index(self.cursor_field)
        field = item.schema.field(index) if index >= 0 else None
        if field is not None and field.metadata == _TYPE_LATER:
            try:
                typed = lib.compute.cast(item.column(index), _timestamp(lib))
            except (lib.ArrowInvalid, lib.ArrowTypeError):
                # the row path would parse these; hand the rows to it
                return item.to_pylist()
            typed_field = lib.field(field.name, _timestamp(lib), field.nullable)
            item = item.set_column(index, typed_field, typed)
        load_id = dlt.current.load_package_state()["load_id"]
        rows = item.num_rows
        metadata = item.schema.metadata or {}
        at = min(int(metadata.get(_DLT_AT, item.num_columns)), item.num_columns)
        item = item.replace_schema_metadata(None).add_column(
            at,
            lib.field(LOAD_ID_COLUMN, lib.string(), nullable=False),
            lib.array([load_id] * rows, type=lib.string()),
        )
        item = item.add_column(
            at + 1,
            lib.field(ROW_ID_COLUMN, lib.string(), nullable=False),
            lib.array(generate_dlt_ids(rows), type=lib.string()),
        )
        found = {name: {"data_type": "json"} for name in self._json_found}
        declared = {**self.hints, **found}
        if any(c.get("data_type") == "json" for c in declared.values()) and (
            only_json_as_text_differs(item, declared)
        ):
            JSON_AS_TEXT_WARNINGS.expect(self.table)
        return item


def mark_in_table(
    table: pa.Table, field: str, value: str, column: str, on_records: Callable[[Any], Any]
) -> Any:
    """Adds a boolean `column`: whether text `field` equals `value` (null counts as not).

    Args:
        table: The batch.
        field: The status field.
        value: The value that sets the flag.
        column: Name of the flag column (replaced when present).
        on_records: Applied to each record instead when `field` is not text (the row path
            compares `str(value)`, which arrow's casts would not match for every type).

    Returns:
        The table with the flag, or the batch as records.
    """
    lib = _pyarrow()
    index = table.schema.get_field_index(field)
    if index >= 0 and table.schema.field(index).type != lib.string():
        return [on_records(record) for record in table.to_pylist()]
    if index < 0:
        flags = lib.array([False] * table.num_rows, type=lib.bool_())
    else:
        equal = lib.compute.equal(table.column(index), lib.scalar(value))
        flags = lib.compute.fill_null(equal, fill_value=False)
    existing = table.schema.get_field_index(column)
    if existing >= 0:
        return table.set_column(existing, column, flags)
    return table.append_column(column, flags)
