"""`cpt cache list` / `cpt cache rm`: what the prefix cache and the periodic checkpoints hold on
disk, and removing it (a 410M entry is ~0.8 GB of weights, a checkpoint with AdamW ~5 GB)."""

from __future__ import annotations

import datetime
from pathlib import Path

from cpt.store.writable import human_size


def add_parser(sub):
    import argparse

    p = sub.add_parser("cache", help="list or remove cached stage prefixes and periodic checkpoints")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output-dir", default="outputs", help="the runs' paths.output_dir (default: outputs)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("list", parents=[common], help="entries and checkpoints with their sizes and last use")
    rm = verbs.add_parser("rm", parents=[common],
                          help="remove entries or checkpoint directories by key (a unique prefix will do)")
    rm.add_argument("keys", nargs="*", help="cache keys, or checkpoint names (prefix-<key> / run-<key>)")
    rm.add_argument("--all", action="store_true", help="remove every entry and every checkpoint")
    return p


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _checkpoint_dirs(root: Path) -> list[Path]:
    base = root / "checkpoints"
    return sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")) if base.is_dir() else []


def _dir_size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def list_cache(root: Path) -> str:
    from cpt.store.prefix_cache import PrefixCache
    from cpt.store.stage_checkpoints import StageCheckpoints

    entries = PrefixCache(root / "cache").entries()
    lines = [f"cache {root / 'cache'}: {len(entries)} entries, "
             f"{human_size(sum(e.size_bytes() for e in entries))}"]
    if entries:
        lines.append(f"  {'key':<20}  {'stage':>5}  {'size':>9}  {'last used':<16}  trained by MLflow run")
    for e in sorted(entries, key=lambda e: -e.last_used):
        lines.append(f"  {e.key:<20}  {e.result.get('stage', '?'):>5}  {human_size(e.size_bytes()):>9}  "
                     f"{_when(e.last_used):<16}  {e.result.get('run_id', '')}")
    dirs = _checkpoint_dirs(root)
    lines.append(f"checkpoints {root / 'checkpoints'}: {len(dirs)} unfinished stages, "
                 f"{human_size(sum(_dir_size(d) for d in dirs))}")
    for d in dirs:
        steps = StageCheckpoints(d).steps()
        lines.append(f"  {d.name:<28}  steps {', '.join(map(str, steps)) or '-':<12}  {human_size(_dir_size(d)):>9}  "
                     f"{_when(d.stat().st_mtime)}")
    return "\n".join(lines)


def _resolve(key: str, names: list[str]) -> str:
    from cpt.errors import UserError

    if key in names:
        return key
    hits = [n for n in names if n.startswith(key) or n.split("-", 1)[-1].startswith(key)]
    if len(hits) != 1 or len(key) < 4:
        why = "matches nothing" if not hits else f"matches {len(hits)}" if len(hits) > 1 else "is too short"
        raise UserError(f"cpt cache rm {key}: {why}; allowed: a key (or a unique prefix of at least 4 "
                        "characters) that `cpt cache list` shows")
    return hits[0]


def remove(root: Path, keys: list[str], everything: bool) -> list[str]:
    """Remove entries / checkpoint dirs, each under its lock (never one a running job writes)."""
    from cpt.store.atomic import remove_dir
    from cpt.store.locks import LockTaken
    from cpt.store.prefix_cache import PrefixCache
    from cpt.errors import UserError

    cache = PrefixCache(root / "cache")
    entries = {e.key: e for e in cache.entries()}
    ckpts = {d.name: d for d in _checkpoint_dirs(root)}
    if everything:
        chosen = list(entries) + list(ckpts)
    elif keys:
        chosen = [_resolve(k, list(entries) + list(ckpts)) for k in keys]
    else:
        raise UserError("cpt cache rm: nothing named; allowed: keys from `cpt cache list`, or --all")
    removed = []
    for name in chosen:
        lock = name if name in entries else name.split("-", 1)[1] if name.startswith("prefix-") else name
        try:
            with cache.lock(lock, wait=False):
                if name in entries:
                    cache.remove(name)
                else:
                    remove_dir(ckpts[name])
        except LockTaken:
            raise UserError(f"cpt cache rm {name}: a running job holds it; allowed: entries no job is "
                            "using (wait for the job or stop it)") from None
        removed.append(name)
    return removed


def main(args) -> int:
    root = Path(args.output_dir)
    if args.verb == "list":
        print(list_cache(root))
        return 0
    for name in remove(root, args.keys, args.all):
        print(f"removed {name}")
    return 0
