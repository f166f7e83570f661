"""`cpt prepare --verify`: every byte of every shard a config uses, against its manifest's checksums.

Opening a shard checks only its stamp (cpt/data/integrity.py); this reads the whole arrays, which
at the papers' scale is hundreds of GB, so it is asked for, not done on every run. It builds
nothing: a shard that is not there is reported, not made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpt.config.schema import RunConfig
from cpt.data import integrity
from cpt.data.prepare import shard_dirs
from cpt.data.shards import corrupt, open_shard, read_manifest, restamp, verify_file
from cpt.errors import UserError


@dataclass(frozen=True)
class Verdict:
    name: str  # the dataset's
    status: str  # ok | corrupt | missing | unchecked
    text: str  # the shard's path when ok; else what is wrong and what to do


def verify_shards(cfg: RunConfig, show: bool | None = None) -> list[Verdict]:
    """One verdict per dataset of the config, in order (a shard two datasets share is read once)."""
    fp, dirs = shard_dirs(cfg)
    done: dict[Path, tuple[str, str]] = {}
    out = []
    for d in cfg.shift.datasets:
        if fp is None:
            out.append(Verdict(d.name, "missing", "not built (nor its tokenizer): `cpt prepare <overrides>` builds it"))
            continue
        path = dirs[d.name]
        if path not in done:
            done[path] = verify_shard(path, fp, show)
        out.append(Verdict(d.name, *done[path]))
    return out


def verify_shard(path: Path, tokenizer_fp: str, show: bool | None = None) -> tuple[str, str]:
    """(status, text) of the shard at `path`; a file that passes with a moved mtime is re-stamped,
    so the next open need not read it all again."""
    try:
        if open_shard(path, tokenizer_fp, check=False) is None:
            return "missing", f"{path}: not built; `cpt prepare <overrides>` builds it"
        m = read_manifest(path)
    except UserError as e:
        return "corrupt", str(e)
    if not m.get("files"):
        return "unchecked", (f"{path}: no checksums (built before cpt recorded them); delete it to "
                             "rebuild it with them")
    for name, rec in m["files"].items():
        f = path / name
        problem = verify_file(f, rec, path.name, show)
        if problem is not None:
            return "corrupt", corrupt(f, path, problem)
        if integrity.moved(f, rec):
            restamp(path, m, name)
    return "ok", str(path)
