"""The prefix cache as the ranks of one job see it: rank 0 decides, the others follow.

Only rank 0 takes the cross-job flock and writes entries; it tells the other ranks whether the
prefix was there, so all ranks of a job train the same stages. (If every rank looked for
itself, a rank could see an entry that another job finished a moment later and skip a stage
its peers train.) Entries are read by every rank, so on several nodes `paths.output_dir` must
be on a shared file system, as it is for the MLflow artifacts and the Hydra outputs.
"""

from __future__ import annotations

from contextlib import nullcontext

from cpt.store.prefix_cache import Entry, PrefixCache
from cpt.dist.ranks import SINGLE, Dist


class RankCache:
    def __init__(self, cache: PrefixCache, dist: Dist = SINGLE):
        self.cache, self.dist = cache, dist

    def lock(self, key: str):
        return self.cache.lock(key) if self.dist.is_zero else nullcontext()

    def get(self, key: str) -> Entry | None:
        hit = self.dist.broadcast(self.cache.get(key) is not None if self.dist.is_zero else None)
        return self._read(key) if hit else None

    def put(self, key: str, state_dict, result: dict, pre_anneal=None) -> Entry:
        if self.dist.is_zero:
            entry = self.cache.put(key, state_dict, result, pre_anneal=pre_anneal)
            self.dist.barrier()
            return entry
        self.dist.barrier()
        return self._read(key)

    def _read(self, key: str) -> Entry:
        entry = self.cache.get(key, touch=self.dist.is_zero)
        if entry is None:
            raise RuntimeError(f"rank {self.dist.rank} cannot see cache entry {self.cache.root / key}: "
                               "paths.output_dir must be on a file system shared by all nodes")
        return entry

    def add_val(self, entry: Entry, losses: dict[str, float]) -> None:
        if self.dist.is_zero:
            self.cache.add_val(entry, losses)
        else:
            entry.result["val"] = {**entry.result["val"], **losses}

    def add_scores(self, entry: Entry, scores: dict[str, dict]) -> None:
        if self.dist.is_zero:
            self.cache.add_scores(entry, scores)
        else:
            entry.result["harness"] = {**entry.result.get("harness", {}), **scores}
