"""Checksums of token files: one hash for every rule (parts, shard stamps, full verification).

A shard's manifest holds, per array file, a **stamp** (size, mtime_ns, the hash of its first and
last STAMP_BYTES) and the hash of every byte. Opening a shard checks the stamp (a few MiB per
file, however big the shard); `cpt prepare --verify` checks every byte. The stamp's mtime is a
trigger, not a verdict: a copy without `cp -p` changes it and nothing else, while any write to
the file changes it too, so a file whose mtime moved is checked in full once and re-stamped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HASH = "sha256"  # hardware-accelerated on current CPUs: ~1.7 GB/s on one core here
STAMP_BYTES = 1 << 20  # the head and the tail a stamp hashes
READ_BYTES = 1 << 24  # read per call while hashing a whole file


def hasher():
    return hashlib.new(HASH)


def digest(path: Path, start: int = 0, length: int | None = None, report=None) -> str:
    """The hash of `length` bytes of `path` from `start` (to its end by default); `report(n)` is
    called with the bytes of each read (a progress bar)."""
    h = hasher()
    with open(path, "rb") as f:
        f.seek(start)
        left = float("inf") if length is None else length
        while left > 0:
            chunk = f.read(int(min(READ_BYTES, left)))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
            if report is not None:
                report(len(chunk))
    return h.hexdigest()


def stamp(path: Path) -> dict:
    """The cheap fingerprint of a file, checked on every open."""
    st = os.stat(path)
    tail = max(0, st.st_size - STAMP_BYTES)
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "head": digest(path, 0, STAMP_BYTES), "tail": digest(path, tail, STAMP_BYTES)}


def stamp_problem(path: Path, recorded: dict) -> str | None:
    """What is wrong with `path` by its stamp, or None (its mtime alone is no problem: `moved`)."""
    now = stamp(path)
    if now["bytes"] != recorded["bytes"]:
        return f"is {now['bytes']:,} bytes, its manifest says {recorded['bytes']:,}"
    for end in ("head", "tail"):
        if now[end] != recorded[end]:
            which = "first" if end == "head" else "last"
            return f"its {which} MiB differs from the checksum in its manifest"
    return None


def moved(path: Path, recorded: dict) -> bool:
    """The file's mtime is not the one stamped (copied without -p, or written to since)."""
    return os.stat(path).st_mtime_ns != recorded["mtime_ns"]


def full_problem(path: Path, recorded: dict, report=None) -> str | None:
    """What is wrong with `path` by every byte, or None."""
    problem = stamp_problem(path, recorded)
    if problem is None and digest(path, report=report) != recorded[HASH]:
        problem = "its bytes differ from the checksum in its manifest"
    return problem


def bar(desc: str, total: int, show: bool | None = None):
    """A bytes/s progress bar for a long hash (tqdm, as the tokenizing bar of cpt/data/build.py);
    `show` None: only when stderr is a terminal."""
    import sys

    from tqdm import tqdm

    show = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not show, dynamic_ncols=True,
                mininterval=0.5, leave=False)
