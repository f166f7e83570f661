"""The one inter-process lock: an flock on a lock file (through the `filelock` library).

The kernel drops the lock of a process that dies, even by SIGKILL, so a crashed job never
blocks the others. The lock file stays in place on release: waiters must share its inode.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LockTaken = Timeout  # what file_lock(wait=False) raises when another process holds the lock


@contextmanager
def file_lock(path: Path, wait: bool = True):
    """Hold an exclusive lock on `path` (created, with its directory, if missing) for the block.

    wait=True blocks until the lock is free (no timeout); wait=False raises LockTaken at once."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, timeout=-1 if wait else 0):
        yield
