"""Writing shared state safely: a directory appears complete or not at all."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling directory; rename it to `final` only if the block succeeds.

    A crash leaves a `.tmp-*` directory that no reader looks at, never a half-written `final`.
    If another process published `final` first, ours is discarded (both were built from the
    same inputs).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def remove_dir(path: Path) -> None:
    """Delete a directory in one step: renamed to a `.trash-*` sibling, then removed.

    A reader sees it whole or not at all (never half-deleted); a crash mid-delete leaves only a
    `.trash-*` directory, which no reader looks at."""
    path = Path(path)
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
