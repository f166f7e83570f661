"""Build one dataset's token shard: units tokenized into parts in parallel, then merged in order.

- Parallel: units (files, hub shards) are tokenized by a pool of worker processes, each reading,
  decompressing, parsing and encoding its own unit; results come back as part files on disk.
- Bounded: a unit stops after `cap` tokens, the most one unit can contribute to the shard, and no
  more units are started once the finished ones (plus those running) cover the budget. If a cut
  unit turns out too short (validation documents can be scarce), it is redone with 4x the cap.
- Resumable: finished parts live in `.parts-<shard>/` and are reused by the next attempt; the
  shard itself appears in one rename (cpt/store/atomic.py), and then the parts are deleted.
- One builder per shard at a time (an flock); a second process waits and then finds the shard.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from cpt.data import parts as part_io
from cpt.data.shards import VAL_EVERY, Shard, full, open_shard, route, write_shard
from cpt.store.locks import file_lock

POLL_S = 0.2  # how often the progress bar is refreshed while workers run


@contextmanager
def shard_lock(path: Path):
    with file_lock(path.parent / ".locks" / f"{path.name}.lock"):
        yield


def default_workers(n_units: int) -> int:
    return max(1, min(os.cpu_count() or 1, n_units))


def build_shard(path: Path, name: str, identity: dict, units: list, tok, eos: int, train_tokens: int,
                val_tokens: int, tokenizer_fp: str, workers: int | None = None,
                progress: bool | None = None, on_part=None) -> Shard:
    """The shard at `path`, built from `units` unless a finished one is already there.

    `on_part(name, index)` is called after each unit's part is on disk (tests interrupt there).
    """
    with shard_lock(path):
        shard = open_shard(path, tokenizer_fp)
        if shard is not None:
            return shard
        dtype = "uint16" if tok.get_vocab_size() <= 65535 else "uint32"
        parts_dir = path.parent / f".parts-{path.name}"
        parts_dir.mkdir(parents=True, exist_ok=True)
        for stale in parts_dir.glob("*.tmp-*"):  # left by a killed worker; we hold the lock
            stale.unlink(missing_ok=True)
        build = _Build(units, parts_dir, train_tokens, val_tokens)
        workers = default_workers(len(units)) if workers is None else max(1, workers)
        show = sys.stderr.isatty() if progress is None else progress
        build.run(name, tok.to_str(), eos, dtype, workers, show, on_part)
        shard = write_shard(path, name, identity, build.used_parts(), dtype, train_tokens, val_tokens,
                            tokenizer_fp)
        shutil.rmtree(parts_dir, ignore_errors=True)
        return shard


class _Build:
    """The state of one build: which parts exist, and how far the in-order merge has got."""

    def __init__(self, units, parts_dir: Path, train_tokens: int, val_tokens: int):
        self.units = units
        self.ids = [u.identity() for u in units]
        self.stems = [parts_dir / f"{i:06d}" for i in range(len(units))]
        self.want = {"train": train_tokens + 1, "val": val_tokens + 1}
        # One unit never contributes more than the whole shard; while validation lags behind
        # training, VAL_EVERY tokens are read per validation token.
        base = max(self.want["train"] + self.want["val"], VAL_EVERY * self.want["val"])
        self.caps = [base] * len(units)
        self.parts = {}
        for i, stem in enumerate(self.stems):
            p = part_io.load_part(stem, self.ids[i])
            if p is not None:
                self.parts[i] = p
        self.have = {"train": 0, "val": 0}
        self.cursor, self.first_doc, self.done = 0, 0, False

    def advance(self) -> None:
        """Merge (count only) the parts that are ready, in order, as far as they reach."""
        while not self.done and self.cursor < len(self.units):
            p = self.parts.get(self.cursor)
            if p is None or not p.covers(self.caps[self.cursor]):
                return
            have = dict(self.have)
            route(p.lengths(), self.first_doc, have, self.want)
            if full(have, self.want):
                self.have, self.done = have, True
                self.cursor += 1
            elif p.complete:
                self.have = have
                self.first_doc += p.docs
                self.cursor += 1
            else:  # cut short and still not enough: read further into this unit
                self.caps[self.cursor] = 4 * max(self.caps[self.cursor], p.tokens)
                return
        self.done = True  # every unit read: the shard is as large as the source

    def remaining(self) -> int:
        train = self.want["train"] - self.have["train"]
        val = self.want["val"] - self.have["val"]
        return max(train + val, VAL_EVERY * val)

    def needs(self, i: int) -> bool:
        p = self.parts.get(i)
        return p is None or not p.covers(self.caps[i])

    def used_parts(self) -> list:
        return [self.parts[i] for i in range(self.cursor)]

    def run(self, name, tokenizer_json, eos, dtype, workers, show, on_part) -> None:
        from tqdm import tqdm

        self.advance()
        if self.done:
            return
        bar = tqdm(total=self.remaining(), unit="tok", unit_scale=True, desc=f"tokenizing {name}",
                   disable=not show, dynamic_ncols=True, mininterval=0.5)
        pool = _Inline(bar.update) if workers == 1 else _Pool(workers)
        running: dict[int, object] = {}
        try:
            while not self.done:
                self._submit(pool, running, workers, tokenizer_json, eos, dtype)
                if not running:  # nothing to wait for and not done: a bug, never a hang
                    raise RuntimeError(f"shard build of {name} stalled at unit {self.cursor}")
                pool.wait(running.values(), POLL_S, bar.update)
                for i, job in list(running.items()):
                    if job.ready():
                        del running[i]
                        self.parts[i] = job.get()  # re-raises a worker's UserError here
                        if on_part is not None:
                            on_part(name, i)
                self.advance()
        finally:
            pool.close()
            bar.close()

    def _submit(self, pool, running, workers, tokenizer_json, eos, dtype) -> None:
        ahead = sum(self.parts[i].tokens for i in range(self.cursor, len(self.units))
                    if i in self.parts and not self.needs(i))
        done_sizes = [p.tokens for p in self.parts.values() if p.complete]
        guess = sum(done_sizes) // len(done_sizes) if done_sizes else self.caps[0]
        ahead += guess * len(running)
        for i in range(self.cursor, len(self.units)):
            if len(running) >= workers or (i > self.cursor and ahead >= self.remaining()):
                return
            if i in running or not self.needs(i):
                continue
            running[i] = pool.submit(self.units[i], self.ids[i], tokenizer_json, eos, dtype,
                                     self.caps[i], self.stems[i])
            ahead += guess


class _Done:
    """A finished job of the in-process runner (the AsyncResult interface)."""

    def __init__(self, fn, *args):
        try:
            self.value, self.error = fn(*args), None
        except Exception as e:
            self.value, self.error = None, e

    def ready(self) -> bool:
        return True

    def get(self):
        if self.error is not None:
            raise self.error
        return self.value


class _Inline:
    """Tokenize in this process (one worker: no start-up cost, the encoder uses every core)."""

    def __init__(self, report):
        self.report = report

    def submit(self, unit, ident, tokenizer_json, eos, dtype, cap, stem):
        return _Done(part_io.tokenize_unit, unit, ident, tokenizer_json, eos, dtype, cap, stem, self.report)

    def wait(self, jobs, timeout, report) -> None:
        pass

    def close(self) -> None:
        pass


_QUEUE = None


def _init_worker(queue, threads: int) -> None:
    global _QUEUE
    _QUEUE = queue
    # Rust-side threads per worker: the processes already use every core between them.
    os.environ["RAYON_NUM_THREADS"] = str(threads)


def _work(unit, ident, tokenizer_json, eos, dtype, cap, stem):
    return part_io.tokenize_unit(unit, ident, tokenizer_json, eos, dtype, cap, stem, _QUEUE.put)


class _Pool:
    """Worker processes (spawned: the parent may hold threads of torch or the tokenizer)."""

    def __init__(self, workers: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.queue = ctx.Queue()
        threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(self.queue, threads))

    def submit(self, *args):
        return self.pool.apply_async(_work, args)

    def wait(self, jobs, timeout, report) -> None:
        import queue as queue_mod

        try:
            report(self.queue.get(timeout=timeout))
            while True:
                report(self.queue.get_nowait())
        except queue_mod.Empty:
            pass

    def close(self) -> None:
        # Units still running are not needed (or the build failed): stop them now; their
        # temporary files are ignored and cleaned up by the next build.
        self.pool.terminate()
        self.pool.join()
