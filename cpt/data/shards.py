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
import sys
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from cpt.data import integrity
from cpt.errors import UserError
from cpt.store.atomic import atomic_dir, write_atomic

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


def open_shard(path: Path, tokenizer_fp: str, check: bool = True) -> Shard | None:
    """The shard at `path` if it is complete and matches; None if it was never built.

    `check`: its files' stamps too (a few MiB read per file; cpt/data/integrity.py)."""
    m = read_manifest(path)
    if m is None:
        return None
    if m["tokenizer"] != tokenizer_fp:
        raise UserError(f"{path / 'manifest.json'}: built with tokenizer {m['tokenizer']}, this run's tokenizer is "
                        f"{tokenizer_fp}; allowed: the tokenizer it was built with (or delete {path} to rebuild it)")
    shard = Shard(path, m["train_tokens"], m["val_tokens"], m["dtype"], m.get("source", {}))
    itemsize = np.dtype(shard.dtype).itemsize
    for split, n in (("train", shard.train_tokens), ("val", shard.val_tokens)):
        f = path / f"{split}.bin"
        if not f.exists() or f.stat().st_size != n * itemsize:
            raise UserError(f"{f}: size does not match its manifest ({n} tokens of {shard.dtype}); "
                            f"the shard is corrupt: delete {path} to rebuild it")
    if check:
        _check_stamps(path, m)
    return shard


def read_manifest(path: Path) -> dict | None:
    """The shard's manifest, its fields checked; None if the shard was never built."""
    manifest = path / "manifest.json"
    if not manifest.exists():
        if path.exists():  # atomic_dir never leaves this: someone removed or renamed the manifest
            raise UserError(f"{manifest}: missing; the shard is incomplete: delete {path} to rebuild it")
        return None
    try:
        m = json.loads(manifest.read_text())
        _ = [m[k] for k in ("tokenizer", "train_tokens", "val_tokens", "dtype")]  # KeyError: a field is missing
        np.dtype(m["dtype"])
        _ = [rec[k] for rec in m.get("files", {}).values() for k in ("bytes", "mtime_ns", "head", "tail", integrity.HASH)]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{manifest}: unreadable manifest ({type(e).__name__}: {str(e)[:60]}); "
                        f"the shard is corrupt: delete {path} to rebuild it") from None
    return m


def corrupt(file: Path, shard_dir: Path, problem: str) -> str:
    """The one line of a shard file that fails its checksum: what it is and what to do."""
    return f"{file}: {problem}; the shard is corrupt: delete {shard_dir} to rebuild it"


def _check_stamps(path: Path, m: dict) -> None:
    """Every file against its stamp; one whose mtime moved is checked in full once (a copy without
    -p, or a write: only the bytes tell which) and re-stamped. A manifest from before stamps has
    none: it is read as before (FORMAT is kept, so such shards are not rebuilt for this)."""
    for name, rec in m.get("files", {}).items():
        f = path / name
        problem = integrity.stamp_problem(f, rec)
        if problem is None and integrity.moved(f, rec):
            print(f"{f}: modified since its shard was built (mtime); checking all {rec['bytes']:,} bytes once",
                  file=sys.stderr)
            problem = verify_file(f, rec, path.name)
            if problem is None:
                restamp(path, m, name)
        if problem is not None:
            raise UserError(corrupt(f, path, problem) + " (and `cpt prepare --verify <overrides>` "
                            "to check every byte of the config's other shards)")


def verify_file(f: Path, rec: dict, label: str, show: bool | None = None) -> str | None:
    """Every byte of `f` against its manifest entry, with a bytes/s bar (on a terminal)."""
    with integrity.bar(f"verifying {label}/{f.name}", rec["bytes"], show) as bar:
        return integrity.full_problem(f, rec, bar.update)


def restamp(path: Path, m: dict, name: str) -> None:
    """Record `name`'s current mtime after its bytes were checked, so the next open is cheap again;
    a read-only shard keeps the old stamp (and is checked in full again next time)."""
    m["files"][name]["mtime_ns"] = (path / name).stat().st_mtime_ns
    try:
        write_atomic(path / "manifest.json", json.dumps(m, indent=1, sort_keys=True))
    except OSError:
        pass


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
    """Merge tokenized parts (in source order) into the shard at `path`, atomically; its manifest
    records each array's stamp and checksum (cpt/data/integrity.py)."""
    want = {"train": train_tokens + 1, "val": val_tokens + 1}
    have = {"train": 0, "val": 0}
    with atomic_dir(path) as tmp:
        sums = _merge(tmp, parts, dtype, have, want)
        if have["val"] <= 1 or have["train"] <= 1:
            raise UserError(f"dataset {name}: its source holds too little text "
                            f"({have['train']} training / {have['val']} validation tokens)")
        files = {f"{s}.bin": {**integrity.stamp(tmp / f"{s}.bin"), integrity.HASH: h} for s, h in sums.items()}
        manifest = {"format": FORMAT, "name": name, "source": identity, "tokenizer": tokenizer_fp,
                    "dtype": dtype, "train_tokens": have["train"], "val_tokens": have["val"], "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return Shard(path, have["train"], have["val"], dtype, identity)


def _merge(tmp: Path, parts: list, dtype: str, have: dict, want: dict) -> dict[str, str]:
    """Copy the parts' tokens into tmp/{train,val}.bin; the checksum of each, hashed as written
    (a 600 GB shard is not read back for it)."""
    files = {s: open(tmp / f"{s}.bin", "wb") for s in want}
    hashes = {s: integrity.hasher() for s in want}
    try:
        first_doc = 0
        for part in parts:
            tokens = part.array(dtype)
            for split, offset, count in route(part.lengths(), first_doc, have, want):
                for start in range(offset, offset + count, COPY_TOKENS):
                    chunk = np.ascontiguousarray(tokens[start : min(offset + count, start + COPY_TOKENS)])
                    chunk.tofile(files[split])
                    hashes[split].update(chunk)
            first_doc += part.docs
            if full(have, want):
                break
    finally:
        for f in files.values():
            f.close()
    return {s: h.hexdigest() for s, h in hashes.items()}
