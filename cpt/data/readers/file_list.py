"""Which files a `files` source names: files, directories and globs -> a sorted file list.

The file type comes from the name alone (case-insensitive): ``.jsonl``, ``.json``, ``.txt``
and ``.parquet``, the text formats also as ``.gz``/``.zst``. `files.py` reads each one.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from cpt.errors import UserError

_TEXT_FORMATS = ("jsonl", "json", "txt")
_COMPRESSIONS = ("gz", "zst")
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    tuple(f".{f}" for f in _TEXT_FORMATS)
    + (".parquet",)
    + tuple(f".{f}.{c}" for f in _TEXT_FORMATS for c in _COMPRESSIONS)
)
_SUPPORTED = ", ".join(SUPPORTED_SUFFIXES)

_GLOB_CHARS = re.compile(r"[*?[]")


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


def supported_format(path: str | os.PathLike[str], key: str) -> tuple[str, str | None]:
    """`file_format(path)`, or UserError naming `key` and the supported suffixes."""
    fmt = file_format(path)
    if fmt is None:
        raise UserError(f"{key}: {path} has an unsupported file type; supported: {_SUPPORTED}")
    return fmt


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
        supported_format(path, key)
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
