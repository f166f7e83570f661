"""The rules every reader shares: a record -> its document text, and which documents count.

For JSON records, parquet rows and Hugging Face records alike, the document is the string in
the field `text_field` (default ``"text"``). Documents that are empty or whitespace only are
skipped, and so is a null text field (it is an empty document, the way the hub's own string
columns allow nulls); any other non-string value is an error. A source that yields no document
at all is an error, so a wrong path or field never trains on nothing.
"""

from __future__ import annotations

from typing import Any, Iterator

from cpt.errors import UserError

DEFAULT_TEXT_FIELD = "text"

_JSON_TYPE_NAMES = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}


def non_empty(docs: Iterator[str], source: str, key: str) -> Iterator[str]:
    """The documents of `docs` that hold more than whitespace; UserError once none did."""
    count = 0
    for doc in docs:
        if doc.strip():
            count += 1
            yield doc
    if count == 0:
        raise UserError(
            f"{key}: {source} holds no documents (nothing, or only empty texts); "
            "give a corpus with at least one non-empty document"
        )


def text_of(record: Any, source: Any, where: str, text_field: str, key: str) -> str:
    """The document text of one record ('' for null); `where` places it in `source` for errors."""
    if not isinstance(record, dict):
        raise UserError(
            f"{key}: {source} {where}: the record is a JSON {_json_type(record)}, not an object; "
            f"each record must be an object with a '{text_field}' string field"
        )
    if text_field not in record:
        fields = ", ".join(repr(k) for k in list(record)[:30]) or "none"
        raise UserError(
            f"{key}: {source} {where}: the record has no field '{text_field}' (its fields: {fields}); "
            "the text field must name the field holding the document text"
        )
    value = record[text_field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(
            f"{key}: {source} {where}: field '{text_field}' is a {_json_type(value)}, not a string; "
            "the text field must hold the document text as a string"
        )
    return value


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
