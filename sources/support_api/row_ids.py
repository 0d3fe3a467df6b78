"""`_dlt_load_id` and `_dlt_id` for records on dlt's row path, drawn a page at a time.

dlt's relational normalizer gives every root row a random `_dlt_id`, one `os.urandom` call per
row, unless the row already has one. On this kind of machine a call costs about 8 µs: 0.4 s of
the normalize step of 50k tickets, more than any one column's parsing. `RowIds` draws the ids of
a whole page in one call (as dlt does for arrow tables) and puts them in the records after the
incremental step, so the normalizer keeps them. The records load as they would without it:

- only for tables whose `_dlt_id` dlt would draw at random: not for the merge strategies that
  derive it from the row (`upsert`, `insert-only`, `cdc`, `scd2`), nor for a table name that
  depends on the item, nor for another data normalizer or a naming that renames dlt's columns;
- `_dlt_load_id` is set too, before `_dlt_id`, so a new table's columns keep the row path's
  order (the normalizer writes the same load id over it);
- not for a record with a nested object: the row path puts its flattened columns before dlt's
  two, and they would come after;
- not for a page with a key that names either column (`_dlt_id`, `_DLT_ID`): a row keeps the
  `_dlt_id` it has, as on the row path.

Child rows are left alone: the normalizer sets their parent and position when it derives
their `_dlt_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, Final

import dlt
from dlt.common.destination.capabilities import DestinationCapabilitiesContext
from dlt.common.destination.utils import resolve_merge_strategy
from dlt.common.exceptions import DltException
from dlt.common.normalizers.json.relational import DataItemNormalizer as RelationalNormalizer
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.schema import Schema
from dlt.common.schema.typing import TSchemaTables

LOAD_ID_COLUMN: Final = "_dlt_load_id"
ROW_ID_COLUMN: Final = "_dlt_id"
_DLT_COLUMNS: Final = frozenset((LOAD_ID_COLUMN, ROW_ID_COLUMN))
_RANDOM_ID_STRATEGY: Final = "delete-insert"
"""The merge strategy that keeps dlt's random `_dlt_id` (the others hash the row or its key)."""


class RowIds:
    """Sets `_dlt_load_id` and `_dlt_id` on the records of a page, where the row path would.

    Attributes:
        schema: Returns the pipeline schema being extracted into (None outside a pipeline).
        capabilities: Returns the destination's capabilities (None without a destination).
    """

    def __init__(
        self,
        schema: Callable[[], Schema | None],
        capabilities: Callable[[], DestinationCapabilitiesContext | None],
    ) -> None:
        """Remembers where the schema and the destination's capabilities come from.

        Args:
            schema: The pipeline schema, read once per extract.
            capabilities: The destination's capabilities (its default merge strategy).
        """
        self.schema = schema
        self.capabilities = capabilities
        self._decided: tuple[str, bool] | None = None
        self._checked_keys: set[str] = set()

    def add(self, records: list[Any]) -> list[Any]:
        """Gives each plain record of a page its `_dlt_load_id` and a random `_dlt_id`.

        Args:
            records: One page (or batch) of records, after the incremental step.

        Returns:
            The same list; its records changed in place where the row path draws the id.
        """
        if not records:
            return records
        load_id = self._load_id(records[0])
        if load_id is None or not self._keys_are_plain(records):
            return records
        for record, row_id in zip(records, generate_dlt_ids(len(records)), strict=True):
            if type(record) is dict and dict not in map(type, record.values()):
                record[LOAD_ID_COLUMN] = load_id
                record[ROW_ID_COLUMN] = row_id
        return records

    def _load_id(self, first: Any) -> str | None:
        """The load id when this extract's rows get random ids; decided once per extract."""
        schema = self.schema()
        if schema is None:
            return None
        try:
            load_id: str = dlt.current.load_package_state()["load_id"]
        except (DltException, KeyError):
            return None
        decided = self._decided
        if decided is None or decided[0] != load_id:
            decided = (load_id, self._random_ids(schema, first))
            self._decided = decided
            self._checked_keys = set()  # another pipeline may name columns differently
        return load_id if decided[1] else None

    def _random_ids(self, schema: Schema, first: Any) -> bool:
        """Whether dlt's normalizer would give the resource's root rows random ids."""
        if not isinstance(schema.data_item_normalizer, RelationalNormalizer) or any(
            schema.naming.normalize_identifier(name) != name for name in _DLT_COLUMNS
        ):
            return False
        try:
            resource = dlt.current.resource()
            if resource.has_dynamic_table_name:
                return False
            table = resource.compute_table_schema(first)
            if table.get("write_disposition") != "merge":
                return True
            tables: TSchemaTables = {**schema.tables, str(table["name"]): table}
            strategy = resolve_merge_strategy(tables, table, self.capabilities())
        except (DltException, KeyError):
            return False
        return strategy == _RANDOM_ID_STRATEGY

    def _keys_are_plain(self, records: list[Any]) -> bool:
        """Whether no key of the page names dlt's columns once normalized (new keys only)."""
        keys = set(chain.from_iterable(r for r in records if type(r) is dict))
        new = keys - self._checked_keys
        if new:
            schema = self.schema()
            naming = schema.naming if schema is not None else None
            for key in new:
                if key in _DLT_COLUMNS or (
                    naming is not None and naming.normalize_identifier(key) in _DLT_COLUMNS
                ):
                    return False
            self._checked_keys |= new
        return True
