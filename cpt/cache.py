"""The stage-prefix cache: weights and end-of-stage metrics of stages 0..k, by prefix key.

An entry is a directory `cache/<key>/` with `weights.pt` (weights only: the papers restart the
optimizer at every stage) and `result.json`; a stage with an infinite schedule also keeps
`pre_anneal.pt`, the weights before its anneal, which the chain's next stage continues from
(`weights.pt` is the annealed model, the one evaluated). It is written under a temporary name
and renamed, so a half-written entry is never seen. Concurrent jobs needing the same prefix serialise on an
`flock`: the first trains it, the others wait and then find the entry. The OS drops the lock of
a crashed process, so a dead job never blocks the others.
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpt.storage import atomic_dir, write_atomic


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
        import torch

        return torch.load(path or self.weights, map_location="cpu", weights_only=True)


class PrefixCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def get(self, key: str) -> Entry | None:
        path = self.root / key
        result = path / "result.json"
        if not result.exists() or not (path / "weights.pt").exists():
            return None
        entry = Entry(key, path, json.loads(result.read_text()))
        self._touch(entry)
        return entry

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

    @contextmanager
    def lock(self, key: str):
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        with open(self.root / "locks" / f"{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _touch(self, entry: Entry) -> None:
        (entry.path / "last_used").write_text(str(time.time()))
