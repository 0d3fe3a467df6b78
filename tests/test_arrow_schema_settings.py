"""Schema settings dlt's row path applies to new columns, and arrow batches with them.

dlt's normalizer gives a new column its type from the schema's preferred types and type
detections, its hints from the default hints, and drops the columns the table's filters
exclude. dlt's arrow extractor does none of that. Arrow batches apply the same settings, or
leave the batch to the row path: both load the same tables, with the same column hints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dlt
import pytest
from dlt.common.normalizers.json.relational import DataItemNormalizer as RelationalNormalizer
from dlt.common.schema import Schema
from dlt.common.schema.typing import TRowFilters, TSimpleRegex

from sources.support_api.arrow_pages import ArrowBatches, is_arrow_table
from tests.helpers import arrow_tables, loaded_tables, make_pipeline

SchemaSetup = Callable[[Schema], None]


def records() -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "org_id": i * 10,
            "epoch": 1_700_000_000 + i,
            "at": f"2024-01-0{i + 1}T00:00:00Z",
            "day": f"2024-01-0{i + 1}",
            "note": "x" if i else None,
        }
        for i in range(3)
    ]


def nested_records() -> list[dict[str, Any]]:
    return [
        {"id": i, "via": {"channel": "email", "rel": i}, "tags": ["a", "b"][: i % 3]}
        for i in range(3)
    ]


def load(
    tmp_path, name: str, setup: SchemaSetup, arrow: bool, rows: Callable[[], Any] = records
) -> dlt.Pipeline:
    """Loads `rows()` into table `t` as arrow batches or as dlt's rows."""

    @dlt.resource(name="t")
    def t() -> Iterator[Any]:
        if not arrow:
            yield rows()
            return
        batches = ArrowBatches("t", None, {}, dlt.current.source_schema)
        for batch in batches.batches([rows()]):
            yield batches.finish_with_hints(batch)

    schema = Schema("settings")
    setup(schema)
    pipeline = make_pipeline(tmp_path, name)
    pipeline.run(dlt.source(lambda: t, schema=schema)())
    return pipeline


def unchanged(schema: Schema) -> None:
    """dlt's default settings."""


def with_detections(*detections: str) -> SchemaSetup:
    def setup(schema: Schema) -> None:
        for detection in ("iso_timestamp", *detections):
            schema.add_type_detection(detection)  # type: ignore[arg-type]

    return setup


def no_detections(schema: Schema) -> None:
    schema.remove_type_detection("iso_timestamp")


def excluding_note(schema: Schema) -> None:
    excludes = TRowFilters(excludes=[TSimpleRegex("note")], includes=[])
    schema.update_table({"name": "t", "columns": {}, "filters": excludes})


def with_default_hints(schema: Schema) -> None:
    schema.merge_hints(
        {
            "unique": [TSimpleRegex("org_id")],
            "partition": [TSimpleRegex("re:^ep")],
            "not_null": [TSimpleRegex("day")],
        }
    )


@pytest.mark.parametrize(
    ("setup", "as_arrow"),
    [
        pytest.param(unchanged, True, id="dlt's own default hints on _dlt_id"),
        pytest.param(with_default_hints, True, id="default hints on new columns"),
        pytest.param(no_detections, True, id="no type detections: timestamps stay text"),
        pytest.param(
            lambda schema: schema.update_preferred_types({"epoch": "double"}),
            True,
            id="preferred type the values widen to",
        ),
        pytest.param(
            lambda schema: schema.update_preferred_types({"re:_id$": "text"}),
            False,
            id="preferred type the row path coerces to",
        ),
        pytest.param(with_detections("timestamp"), False, id="epoch numbers as timestamps"),
        pytest.param(with_detections("iso_date"), False, id="iso dates detected"),
        pytest.param(excluding_note, False, id="excluded column"),
    ],
)
def test_arrow_batches_load_what_the_row_path_loads_under_schema_settings(
    tmp_path, setup: SchemaSetup, as_arrow: bool
):
    arrow = load(tmp_path, "arrow", setup, arrow=True)
    rows = load(tmp_path, "rows", setup, arrow=False)
    # the column hints and their order too, `unique` and `row_key` of `_dlt_id` included
    assert loaded_tables(arrow) == loaded_tables(rows)
    assert arrow_tables(arrow) == ({"t"} if as_arrow else set())


def test_dlt_id_of_arrow_batches_is_unique_and_the_row_key(tmp_path):
    pipeline = load(tmp_path, "own", unchanged, arrow=True)
    columns = pipeline.default_schema.get_table_columns("t")
    assert columns["_dlt_id"]["unique"] is True
    assert columns["_dlt_id"]["row_key"] is True
    assert columns["_dlt_load_id"]["nullable"] is False


def test_a_null_in_a_column_a_default_hint_makes_not_null_is_left_to_the_row_path():
    schema = Schema("not_null")
    schema.merge_hints({"not_null": [TSimpleRegex("note")]})
    batches = ArrowBatches("t", None, {}, lambda: schema)
    (batch,) = batches.batches([records()])
    assert not is_arrow_table(batch)  # the row path reports the null where dlt does


def nesting_zero(schema: Schema) -> None:
    RelationalNormalizer.update_normalizer_config(schema, {"max_nesting": 0})


def nesting_zero_but_via_text(schema: Schema) -> None:
    nesting_zero(schema)
    schema.update_preferred_types({TSimpleRegex("via"): "text"})


@pytest.mark.parametrize(
    ("setup", "as_arrow"),
    [
        pytest.param(nesting_zero, True, id="max_nesting 0: nested values kept whole"),
        pytest.param(
            lambda schema: schema.update_preferred_types(
                {TSimpleRegex("via"): "json", TSimpleRegex("tags"): "json"}
            ),
            True,
            id="preferred json",
        ),
        pytest.param(nesting_zero_but_via_text, False, id="max_nesting 0, preferred text"),
        pytest.param(unchanged, False, id="flattened and child tables"),
    ],
)
def test_nested_values_load_as_on_the_row_path(tmp_path, setup: SchemaSetup, as_arrow: bool):
    arrow = load(tmp_path, "arrow", setup, arrow=True, rows=nested_records)
    rows = load(tmp_path, "rows", setup, arrow=False, rows=nested_records)
    assert loaded_tables(arrow) == loaded_tables(rows)
    assert arrow_tables(arrow) == ({"t"} if as_arrow else set())
