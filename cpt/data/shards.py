"""Token shards: every dataset becomes two flat token arrays on disk (train, val) + a manifest.

Built once per (dataset identity, budget, tokenizer fingerprint) and memory-mapped by every run
that needs them. The split is at document level and fixed: documents 0, VAL_EVERY, 2·VAL_EVERY…
go to validation until it holds `val_tokens`, all others to training, so the two never share a
document and the split does not depend on the training budget. Each document ends with EOS.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cpt.errors import UserError
from cpt.storage import atomic_dir

FORMAT = 1
VAL_EVERY = 10
ENCODE_BATCH_DOCS = 512


@dataclass(frozen=True)
class Shard:
    """A built dataset: where its arrays are and how many tokens each holds."""

    path: Path
    train_tokens: int
    val_tokens: int
    dtype: str

    def array(self, split: str) -> np.ndarray:
        n = self.train_tokens if split == "train" else self.val_tokens
        return np.memmap(self.path / f"{split}.bin", dtype=self.dtype, mode="r", shape=(n,))


def shard_key(identity: dict, train_tokens: int, val_tokens: int, tokenizer_fp: str) -> str:
    blob = json.dumps([FORMAT, identity, train_tokens, val_tokens, tokenizer_fp], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_shard(path: Path, tokenizer_fp: str) -> Shard | None:
    """The shard at `path` if it is complete and matches; None if it was never built."""
    manifest = path / "manifest.json"
    if not manifest.exists():
        return None
    m = json.loads(manifest.read_text())
    if m["tokenizer"] != tokenizer_fp:
        raise UserError(f"{manifest}: built with tokenizer {m['tokenizer']}, this run uses "
                        f"{tokenizer_fp}; delete the directory or use the same tokenizer")
    shard = Shard(path, m["train_tokens"], m["val_tokens"], m["dtype"])
    itemsize = np.dtype(shard.dtype).itemsize
    for split, n in (("train", shard.train_tokens), ("val", shard.val_tokens)):
        f = path / f"{split}.bin"
        if not f.exists() or f.stat().st_size != n * itemsize:
            raise UserError(f"{f}: size does not match its manifest ({n} tokens of {shard.dtype}); "
                            f"the shard is corrupt: delete {path} to rebuild it")
    return shard


def build_shard(path: Path, name: str, identity: dict, docs: Iterable[str], tok, eos: int,
                train_tokens: int, val_tokens: int, tokenizer_fp: str, progress=None) -> Shard:
    """Tokenize `docs` into train/val arrays of at most train_tokens / val_tokens tokens.

    `train_tokens` is a cap: a source with fewer tokens gives a smaller shard (the stage then
    reads it more than once, and the plan says so). Arrays hold one extra token so the last
    window still has a target.
    """
    dtype = "uint16" if tok.get_vocab_size() <= 65535 else "uint32"
    want = {"train": train_tokens + 1, "val": val_tokens + 1}
    have = {"train": 0, "val": 0}
    with atomic_dir(path) as tmp:
        files = {s: open(tmp / f"{s}.bin", "wb") for s in want}
        try:
            for split, ids in _split_encoded(docs, tok, eos, want, have):
                take = ids[: want[split] - have[split]]
                np.asarray(take, dtype=dtype).tofile(files[split])
                have[split] += len(take)
                if progress is not None and split == "train":
                    progress(len(take))
        finally:
            for f in files.values():
                f.close()
        if have["val"] <= 1 or have["train"] <= 1:
            raise UserError(f"dataset {name}: its source holds too little text "
                            f"({have['train']} training / {have['val']} validation tokens)")
        manifest = {"format": FORMAT, "name": name, "source": identity, "tokenizer": tokenizer_fp,
                    "dtype": dtype, "train_tokens": have["train"], "val_tokens": have["val"]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return Shard(path, have["train"], have["val"], dtype)


def _split_encoded(docs: Iterable[str], tok, eos: int, want: dict, have: dict) -> Iterator[tuple[str, list]]:
    batch: list[str] = []
    index = 0
    for doc in docs:
        batch.append(doc)
        if len(batch) == ENCODE_BATCH_DOCS:
            yield from _route(batch, index, tok, eos, want, have)
            index += len(batch)
            batch = []
            if have["train"] >= want["train"] and have["val"] >= want["val"]:
                return
    yield from _route(batch, index, tok, eos, want, have)


def _route(batch, start, tok, eos, want, have):
    for offset, enc in enumerate(tok.encode_batch(batch) if batch else []):
        val_turn = (start + offset) % VAL_EVERY == 0 and have["val"] < want["val"]
        split = "val" if val_turn else "train"
        if have[split] < want[split]:
            yield split, enc.ids + [eos]
