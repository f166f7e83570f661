"""One local file -> its documents; a problem with the file is one UserError line naming it.

Formats, chosen by file name (case-insensitive):

* ``.jsonl`` — one JSON object per line; blank lines are ignored.
* ``.json`` — either JSON lines, or one JSON array of objects (told apart by the first
  non-blank character being ``[``). The array is parsed incrementally, record by record.
* ``.txt`` — plain text; documents are separated by one or more blank lines (a line holding
  only whitespace counts as blank). Lines inside a document are joined with ``\\n``, so a
  file with no blank lines is a single document.
* ``.parquet`` — the text column is read batch by batch; no other column is loaded.
* ``.jsonl.gz``, ``.json.gz``, ``.txt.gz``, ``.jsonl.zst``, ``.json.zst``, ``.txt.zst`` —
  the same, decompressed while streaming (multi-frame zstd, as the Pile and SlimPajama ship,
  is supported).

For JSON and parquet the document is the string in the field `text_field` (default
``"text"``; the record rules are in `records.py`). Text files are decoded as UTF-8 (a leading
BOM is dropped). A file that yields no document at all is an error.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import IO, Iterator

from cpt.data.readers.decompress import open_text
from cpt.data.readers.file_list import supported_format
from cpt.data.readers.json_array import json_array_docs
from cpt.data.readers.parquet import parquet_docs
from cpt.data.readers.records import DEFAULT_TEXT_FIELD, non_empty, text_of
from cpt.errors import UserError, short_reason

_SNIFF_CHARS = 1 << 16  # characters read per step while looking for the first non-blank one


def iter_documents(
    path: str | os.PathLike[str], text_field: str = DEFAULT_TEXT_FIELD, key: str = "data"
) -> Iterator[str]:
    """Stream the non-empty documents of one file (format from its name; see the module doc).

    The file type is checked now; everything else while iterating. Raises UserError for an
    unsupported type, an unreadable/corrupt/truncated file, invalid JSON (with line number), a
    record without `text_field` (listing the fields it has), a text value that is not a string,
    invalid UTF-8, or a file holding no document.
    """
    path = Path(path)
    fmt = supported_format(path, key)
    return non_empty(_read_file(path, fmt[0], fmt[1], text_field, key), f"{path}", key)


def _read_file(path: Path, fmt: str, comp: str | None, text_field: str, key: str) -> Iterator[str]:
    if fmt == "parquet":
        yield from parquet_docs(path, text_field, key)
        return
    import zstandard

    try:
        if fmt == "txt":
            with open_text(path, comp) as fh:
                yield from _txt_docs(fh)
        elif fmt == "jsonl" or _first_char(path, comp) != "[":
            with open_text(path, comp) as fh:
                yield from _jsonl_docs(fh, path, fmt, text_field, key)
        else:
            with open_text(path, comp) as fh:
                yield from json_array_docs(fh, path, text_field, key)
    except UnicodeDecodeError as e:
        raise UserError(f"{key}: {path} is not valid UTF-8 text ({e.reason}); text files must be UTF-8") from e
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(
            f"{key}: {path} is not a valid gzip file ({short_reason(e)}); a .gz file must be complete gzip data"
        ) from e
    except zstandard.ZstdError as e:
        raise UserError(
            f"{key}: {path} is not a valid zstd file ({short_reason(e)}); a .zst file must be complete zstd data"
        ) from e
    except OSError as e:
        raise UserError(f"{key}: {path} cannot be read ({short_reason(e)})") from e


def _first_char(path: Path, comp: str | None) -> str:
    """First non-whitespace character, or '' for a blank file."""
    with open_text(path, comp) as fh:
        while True:
            chunk = fh.read(_SNIFF_CHARS)
            if not chunk:
                return ""
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]


def _txt_docs(fh: IO[str]) -> Iterator[str]:
    block: list[str] = []
    for line in fh:
        line = line.rstrip("\n")
        if line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _jsonl_docs(fh: IO[str], path: Path, fmt: str, text_field: str, key: str) -> Iterator[str]:
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            what = (
                "each line of a .jsonl file must be one JSON object"
                if fmt == "jsonl"
                else "a .json file must hold JSON lines or one JSON array of objects"
            )
            raise UserError(
                f"{key}: {path} line {lineno}: invalid JSON ({e.msg} at column {e.colno}); {what}"
            ) from None
        yield text_of(record, path, f"line {lineno}", text_field, key)
