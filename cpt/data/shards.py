"""Token shards: every dataset becomes two flat token arrays on disk (train, val) + a manifest.

Built once per (dataset identity, budget, tokenizer fingerprint) and memory-mapped by every run
that needs them. The split is at document level and fixed: documents 0, VAL_EVERY, 2·VAL_EVERY…
(counted over the whole source, in order) go to validation until it holds `val_tokens`, all
others to training, so the two never share a document and the split does not depend on the
training budget or on how the source was cut into parts. Each document ends with EOS. Both
arrays hold one token more than their budget so the last window still has a target; the
document that crosses a budget is cut there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from cpt.errors import UserError
from cpt.store.atomic import atomic_dir

FORMAT = 1
VAL_EVERY = 10
COPY_TOKENS = 1 << 24  # tokens copied per write when merging parts (64 MB of uint32)


@dataclass(frozen=True)
class Shard:
    """A built dataset: where its arrays are and how many tokens each holds."""

    path: Path
    train_tokens: int
    val_tokens: int
    dtype: str
    source: dict = field(default_factory=dict, compare=False)  # the manifest's source identity

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
        if path.exists():  # atomic_dir never leaves this: someone removed or renamed the manifest
            raise UserError(f"{manifest}: missing; the shard is incomplete: delete {path} to rebuild it")
        return None
    try:
        m = json.loads(manifest.read_text())
        m = {**{k: m[k] for k in ("tokenizer", "train_tokens", "val_tokens", "dtype")}, "source": m.get("source", {})}
        np.dtype(m["dtype"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{manifest}: unreadable manifest ({type(e).__name__}: {str(e)[:60]}); "
                        f"the shard is corrupt: delete {path} to rebuild it") from None
    if m["tokenizer"] != tokenizer_fp:
        raise UserError(f"{manifest}: built with tokenizer {m['tokenizer']}, this run's tokenizer is "
                        f"{tokenizer_fp}; allowed: the tokenizer it was built with (or delete {path} to rebuild it)")
    shard = Shard(path, m["train_tokens"], m["val_tokens"], m["dtype"], m["source"])
    itemsize = np.dtype(shard.dtype).itemsize
    for split, n in (("train", shard.train_tokens), ("val", shard.val_tokens)):
        f = path / f"{split}.bin"
        if not f.exists() or f.stat().st_size != n * itemsize:
            raise UserError(f"{f}: size does not match its manifest ({n} tokens of {shard.dtype}); "
                            f"the shard is corrupt: delete {path} to rebuild it")
    return shard


def route(lengths, first_doc: int, have: dict, want: dict) -> list[tuple[str, int, int]]:
    """Where a part's tokens go: (split, offset, count) segments in order; updates `have`.

    `lengths` are the part's document lengths, `first_doc` the index of its first document in
    the whole source. Once validation is full every later document is training data, so the
    rest of the part is one segment (a 300B-token source is not routed document by document).
    """
    segments: list[tuple[str, int, int]] = []

    def add(split: str, offset: int, count: int) -> None:
        have[split] += count
        last = segments[-1] if segments else None
        if last and last[0] == split and last[1] + last[2] == offset:
            segments[-1] = (split, last[1], last[2] + count)
        else:
            segments.append((split, offset, count))

    offset, total = 0, int(np.sum(lengths, dtype=np.int64))
    for i, n in enumerate(lengths):
        if have["val"] >= want["val"]:
            take = min(want["train"] - have["train"], total - offset)
            if take > 0:
                add("train", offset, take)
            break
        split = "val" if (first_doc + i) % VAL_EVERY == 0 else "train"
        take = min(int(n), want[split] - have[split])
        if take > 0:
            add(split, offset, take)
        offset += int(n)
    return segments


def full(have: dict, want: dict) -> bool:
    return have["train"] >= want["train"] and have["val"] >= want["val"]


def write_shard(path: Path, name: str, identity: dict, parts: list, dtype: str, train_tokens: int,
                val_tokens: int, tokenizer_fp: str) -> Shard:
    """Merge tokenized parts (in source order) into the shard at `path`, atomically."""
    want = {"train": train_tokens + 1, "val": val_tokens + 1}
    have = {"train": 0, "val": 0}
    with atomic_dir(path) as tmp:
        files = {s: open(tmp / f"{s}.bin", "wb") for s in want}
        try:
            first_doc = 0
            for part in parts:
                tokens = part.array(dtype)
                for split, offset, count in route(part.lengths(), first_doc, have, want):
                    for start in range(offset, offset + count, COPY_TOKENS):
                        tokens[start : min(offset + count, start + COPY_TOKENS)].tofile(files[split])
                first_doc += part.docs
                if full(have, want):
                    break
        finally:
            for f in files.values():
                f.close()
        if have["val"] <= 1 or have["train"] <= 1:
            raise UserError(f"dataset {name}: its source holds too little text "
                            f"({have['train']} training / {have['val']} validation tokens)")
        manifest = {"format": FORMAT, "name": name, "source": identity, "tokenizer": tokenizer_fp,
                    "dtype": dtype, "train_tokens": have["train"], "val_tokens": have["val"]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return Shard(path, have["train"], have["val"], dtype, identity)
