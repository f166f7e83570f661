"""Can a run write where it is told to, and is there room? One line before any work if not.

Checked before Hydra makes its run directory under `paths.output_dir` (a Hydra callback:
cpt/cli/path_checks.py) and again in the task (a launcher's job process): Hydra, MLflow and
SQLite would otherwise fail with tracebacks, after the data was built or a run was opened.
Root passes every permission check, but not a read-only file system: `os.access` reports that.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from cpt.errors import UserError

SQLITE_MAGIC = b"SQLite format 3\x00"
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # the file system, not the run, is at fault


def check_dir(key: str, path: Path) -> None:
    """`path` is a directory this process can write, or can be created as one."""
    p = _nearest(path)
    if not p.is_dir():
        what = "a symlink to nothing" if p.is_symlink() and not p.exists() else "a file"
        raise UserError(f"{key}={path}: {p} is {what}, not a directory; allowed: a directory that "
                        "can be created and written")
    if not os.access(p, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only(p) else "no write permission"
        raise UserError(f"{key}={path}: {p} cannot be written ({why}); allowed: a directory this user can write")


def _nearest(path: Path) -> Path:
    """`path` or its nearest ancestor that is there (a symlink counts, even a dangling one):
    what creating `path` would meet."""
    return next(p for p in [path, *path.parents] if p.exists() or p.is_symlink())


def _read_only(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///<file>` tracking URI (None for a server or other DB)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_tracking_file(uri: str) -> None:
    """A SQLite store: its directory writable, and the file, if there, an SQLite database."""
    db = sqlite_file(uri)
    if db is None:
        return
    if db.is_dir():
        raise UserError(f"tracking.uri={uri}: {db} is a directory; allowed: sqlite:///<file>")
    check_dir("tracking.uri", db.parent)
    if db.exists() and db.stat().st_size:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            raise UserError(f"tracking.uri={uri}: {db} is not an SQLite database (it starts with {head[:8]!r}); "
                            "allowed: a store MLflow made, or a path where no file is yet")
        if not os.access(db, os.W_OK):
            raise UserError(f"tracking.uri={uri}: {db} cannot be written; allowed: a store this user can write")


def check_paths(output_dir: str, tracking_uri: str) -> None:
    check_dir("paths.output_dir", Path(output_dir))
    check_tracking_file(tracking_uri)


def check_free_space(path: Path, need: int, what: str) -> None:
    """Stop before writing `what` (`need` bytes) where the file system has less room."""
    p = _nearest(path)
    free = shutil.disk_usage(p if p.exists() else p.parent).free  # a dangling symlink: the directory it is in
    if free < need:
        raise UserError(f"{path}: {human_size(free)} free, {what} needs {human_size(need)}; free space there, or set "
                        "paths.output_dir to a disk with room")


def disk_error(e: BaseException, where: str = "the disk it was writing to") -> UserError | None:
    """A full or read-only disk met mid-run as the one line it deserves (None: another error).
    Rust libraries (tokenizers' save) raise a plain Exception ending in "(os error 28)"; numpy's
    `tofile` reports a short write ("49929 requested and 4096 written") without an errno."""
    code = e.errno if isinstance(e, OSError) else _rust_errno(str(e))
    if isinstance(e, OSError) and code is None and re.search(r"\d+ requested and \d+ written", str(e)):
        code = errno.ENOSPC
    if code not in DISK_ERRORS:
        return None
    where = getattr(e, "filename", None) or where
    return UserError(f"{where}: {os.strerror(code)} while writing; free space there (or make it writable) "
                     "and run the same command again, which resumes")


def _rust_errno(message: str) -> int | None:
    found = re.search(r"\(os error (\d+)\)", message)
    return int(found.group(1)) if found else None


def human_size(n: float) -> str:
    """Bytes as people read them (`cpt cache list` prints sizes this way too)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""
