"""A parquet file's text column as documents, read batch by batch (no other column is loaded).

The column must hold strings (plain, large, view or dictionary-encoded); null values are
skipped, the way `records.text_of` treats a null text field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from cpt.errors import UserError, short_reason

_PARQUET_BATCH_ROWS = 1024


def _is_string_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or getattr(pa.types, "is_string_view", lambda _t: False)(arrow_type)
    )


def parquet_docs(path: Path, text_field: str, key: str) -> Iterator[str]:
    """The text column's non-null values, in row order; UserError for a missing or non-string
    column, or a file pyarrow cannot read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def corrupt(e: BaseException) -> UserError:
        return UserError(f"{key}: {path} is not a readable parquet file ({short_reason(e)})")

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise corrupt(e) from e
    with pf:
        schema = pf.schema_arrow
        if text_field not in schema.names:
            columns = ", ".join(repr(n) for n in schema.names[:30]) or "none"
            raise UserError(
                f"{key}: {path} has no column '{text_field}' (its columns: {columns}); "
                "the text field must name the column holding the document text"
            )
        arrow_type = schema.field(text_field).type
        if not _is_string_type(arrow_type):
            raise UserError(
                f"{key}: {path}: column '{text_field}' has type {arrow_type}, not string; "
                "the text field must name a string column"
            )
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_field]):
                for value in batch.column(0).to_pylist():
                    if value is not None:
                        yield value
        except (pa.ArrowException, OSError) as e:
            raise corrupt(e) from e
