"""Corpus readers: a user's files on disk, or a Hugging Face dataset, as an iterator of documents.

This module only turns storage into document strings; tokenizing, splitting and training live
elsewhere. Every problem a user can fix raises `cpt.errors.UserError` with one line naming the
config key, the file (or dataset id) and what is allowed.

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

import glob
import gzip
import json
import os
import re
import zlib
from pathlib import Path
from typing import IO, Iterator

from cpt.data.readers.decompress import open_text
from cpt.data.readers.json_array import json_array_docs
from cpt.data.readers.parquet import parquet_docs
from cpt.data.readers.records import DEFAULT_TEXT_FIELD, non_empty, text_of
from cpt.errors import UserError, short_reason

_TEXT_FORMATS = ("jsonl", "json", "txt")
_COMPRESSIONS = ("gz", "zst")
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    tuple(f".{f}" for f in _TEXT_FORMATS)
    + (".parquet",)
    + tuple(f".{f}.{c}" for f in _TEXT_FORMATS for c in _COMPRESSIONS)
)
_SUPPORTED = ", ".join(SUPPORTED_SUFFIXES)

_SNIFF_CHARS = 1 << 16  # characters read per step while looking for the first non-blank one

_GLOB_CHARS = re.compile(r"[*?[]")


# ----------------------------------------------------------------------------- file lists


def file_format(path: str | os.PathLike[str]) -> tuple[str, str | None] | None:
    """(format, compression) from a file name, e.g. ``("jsonl", "zst")``; None if unsupported."""
    name = os.path.basename(os.fspath(path)).lower()
    if name.endswith(".parquet"):
        return "parquet", None
    for fmt in _TEXT_FORMATS:
        if name.endswith(f".{fmt}"):
            return fmt, None
        for comp in _COMPRESSIONS:
            if name.endswith(f".{fmt}.{comp}"):
                return fmt, comp
    return None


def expand_files(patterns: str | os.PathLike[str] | list, key: str) -> list[Path]:
    """Resolve file entries into a sorted, de-duplicated list of supported files.

    Each entry is a file, a directory (every supported file inside, recursively; hidden
    entries and files of other types are skipped) or a glob (``data/en/*.jsonl``, ``**``
    allowed; a directory it matches is expanded like a directory entry). ``~`` is expanded.
    Paths are made absolute but symlinks are kept: a Hugging Face snapshot folder links to
    blobs whose names carry no extension.

    Raises UserError for an entry that does not exist, a glob matching nothing, a named or
    matched file of an unsupported type, or a directory with no supported file.
    """
    entries = [patterns] if isinstance(patterns, (str, os.PathLike)) else list(patterns)
    if not entries:
        raise UserError(f"{key}: no files given; give files, directories or globs of {_SUPPORTED}")
    found: dict[str, Path] = {}

    def add_file(path: str) -> None:
        if file_format(path) is None:
            raise UserError(
                f"{key}: {path} has an unsupported file type; supported: {_SUPPORTED}"
            )
        absolute = os.path.normpath(os.path.abspath(path))
        found.setdefault(absolute, Path(absolute))

    for entry in entries:
        text = os.path.expanduser(os.fspath(entry)) if isinstance(entry, (str, os.PathLike)) else None
        if text is None or not text.strip():
            raise UserError(
                f"{key}: entry {entry!r} is not a path; give files, directories or globs of {_SUPPORTED}"
            )
        # An existing path is taken literally, so a name with '[' in it is not a glob.
        if os.path.isdir(text):
            for path in _walk_supported(text, key):
                add_file(path)
        elif os.path.isfile(text):
            add_file(text)
        elif _GLOB_CHARS.search(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise UserError(
                    f"{key}: the pattern {text} matches no files; "
                    f"give files, directories or globs of {_SUPPORTED}"
                )
            for match in matches:
                if os.path.isdir(match):
                    for path in _walk_supported(match, key):
                        add_file(path)
                elif os.path.isfile(match):
                    add_file(match)
        elif os.path.exists(text):
            raise UserError(f"{key}: {text} is not a regular file or directory")
        else:
            raise UserError(
                f"{key}: {text} does not exist; give files, directories or globs of {_SUPPORTED}"
            )
    if not found:
        raise UserError(f"{key}: no files found in {entries}; supported: {_SUPPORTED}")
    return [found[k] for k in sorted(found)]


def _walk_supported(directory: str, key: str) -> list[str]:
    files: list[str] = []
    seen: set[str] = set()
    for root, dirnames, filenames in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        # Hidden entries are tool state, e.g. the `.cache/` of `huggingface-cli download`
        # holding partial downloads.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and file_format(name) is not None:
                path = os.path.join(root, name)
                if os.path.isfile(path):
                    files.append(path)
    if not files:
        raise UserError(f"{key}: directory {directory} holds no supported files; supported: {_SUPPORTED}")
    return sorted(files)


# ----------------------------------------------------------------------------- one file


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
    fmt = file_format(path)
    if fmt is None:
        raise UserError(f"{key}: {path} has an unsupported file type; supported: {_SUPPORTED}")
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
