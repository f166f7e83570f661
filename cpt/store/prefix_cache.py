"""The stage-prefix cache: weights and end-of-stage metrics of stages 0..k, by prefix key.

An entry is a directory `cache/<key>/` with `weights.pt` (weights only: the papers restart the
optimizer at every stage) and `result.json`; a stage with an infinite schedule also keeps
`pre_anneal.pt`, the weights before its anneal, which the chain's next stage continues from
(`weights.pt` is the annealed model, the one evaluated). It is written under a temporary name
and renamed, so a half-written entry is never seen. Concurrent jobs needing the same prefix serialise on an
`flock`: the first trains it, the others wait and then find the entry. The OS drops the lock of
a crashed process, so a dead job never blocks the others (tests/test_stage_checkpoints.py kills a holder).
Entries are listed and removed with `cpt cache list` / `cpt cache rm`.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpt.store.atomic import atomic_dir, remove_dir, write_atomic
from cpt.store.locks import file_lock


@dataclass
class Entry:
    key: str
    path: Path
    result: dict  # {"val": {dataset: loss}, "end_tokens": int, "run_id": str, ...}

    @property
    def weights(self) -> Path:
        return self.path / "weights.pt"

    @property
    def pre_anneal(self) -> Path:
        return self.path / "pre_anneal.pt"

    def load_weights(self, path: Path | None = None):
        from cpt.store.stage_checkpoints import torch_load

        return torch_load(path or self.weights, f"cache entry {self.key[:12]} (cpt cache rm {self.key[:12]} removes it)")

    def load_into(self, model, path: Path | None = None) -> None:
        """Weights into `model` (the entry's, or its pre-anneal copy), checked to fit it."""
        from cpt.store.stage_checkpoints import load_state_dict_checked

        load_state_dict_checked(model, self.load_weights(path), path or self.weights)

    @property
    def last_used(self) -> float:
        try:
            return float((self.path / "last_used").read_text())
        except (OSError, ValueError):
            return (self.path / "result.json").stat().st_mtime

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


class PrefixCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def get(self, key: str, touch: bool = True) -> Entry | None:
        path = self.root / key
        result = path / "result.json"
        if not result.exists() or not (path / "weights.pt").exists():
            return None
        try:
            entry = Entry(key, path, json.loads(result.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            from cpt.errors import UserError

            raise UserError(f"{result}: cache entry is unreadable (corrupt); allowed: a complete entry "
                            f"(cpt cache rm {key[:12]} removes it)") from None
        if touch:
            self._touch(entry)
        return entry

    def entries(self) -> list[Entry]:
        """Every complete entry (temporary and trashed directories are not entries)."""
        if not self.root.is_dir():
            return []
        keys = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name not in ("locks",)
                      and not p.name.startswith("."))
        return [e for e in (self.get(k, touch=False) for k in keys) if e is not None]

    def remove(self, key: str) -> None:
        """Delete an entry: renamed away in one step, so a reader sees it whole or not at all."""
        remove_dir(self.root / key)

    def put(self, key: str, state_dict, result: dict, pre_anneal=None) -> Entry:
        import torch

        final = self.root / key
        with atomic_dir(final) as tmp:
            torch.save(state_dict, tmp / "weights.pt")
            if pre_anneal is not None:
                torch.save(pre_anneal, tmp / "pre_anneal.pt")
            (tmp / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
        return Entry(key, final, result)

    def add_val(self, entry: Entry, losses: dict[str, float]) -> None:
        """Record evaluations of datasets the entry did not have (a later chain's new data)."""
        entry.result["val"] = {**entry.result["val"], **losses}
        write_atomic(entry.path / "result.json", json.dumps(entry.result, indent=1, sort_keys=True))

    def add_scores(self, entry: Entry, scores: dict[str, dict]) -> None:
        """Record task scores (cpt/harness/stages.py) the entry did not have, as add_val."""
        entry.result["harness"] = {**entry.result.get("harness", {}), **scores}
        write_atomic(entry.path / "result.json", json.dumps(entry.result, indent=1, sort_keys=True))

    @contextmanager
    def lock(self, key: str, wait: bool = True):
        """Exclusive lock on `key` (a prefix key, or run-<run key> for a run's own stage).
        wait=False raises LockTaken (cpt/store/locks.py) at once if another process holds it."""
        with file_lock(self.root / "locks" / f"{key}.lock", wait=wait):
            yield

    def _touch(self, entry: Entry) -> None:
        (entry.path / "last_used").write_text(str(time.time()))
