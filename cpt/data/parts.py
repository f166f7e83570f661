"""One unit of a source tokenized on its own: a *part* (runs in a worker process).

A part is three files beside each other: `<stem>.bin` (token ids, every document followed by
EOS), `<stem>.len.npy` (tokens per document, EOS included) and `<stem>.json` (its metadata),
written under temporary names and renamed, the JSON last: a part whose JSON exists is complete
and is reused after an interruption; anything else is ignored and redone. The JSON holds the
checksum of both files, checked once when a later attempt reuses the part.

A unit is read to its end, or until `cap` tokens (a sample of a big corpus needs only the first
documents of its first files): then the part says `complete: false` and how far it got.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpt.data import integrity
from cpt.data.sources import Unit
from cpt.store.atomic import write_atomic

FORMAT = 2  # 2: with checksums (a part of format 1 is redone, parts are only a build's scratch)
ENCODE_BATCH_DOCS = 256  # documents per encode call: big enough for the Rust side to parallelise


@dataclass(frozen=True)
class Part:
    stem: Path
    tokens: int
    docs: int
    complete: bool  # the unit was read to its end (else it stopped after `cap` tokens)
    cap: int

    def lengths(self) -> np.ndarray:
        return np.load(f"{self.stem}.len.npy")

    def array(self, dtype: str) -> np.ndarray:
        if self.tokens == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(f"{self.stem}.bin", dtype=dtype, mode="r", shape=(self.tokens,))

    def covers(self, cap: int) -> bool:
        return self.complete or self.tokens >= cap


def load_part(stem: Path, unit_identity: dict) -> Part | None:
    """The finished part at `stem` if it was made from this exact unit and its bytes are intact;
    None otherwise (then it is tokenized again)."""
    meta_path = Path(f"{stem}.json")
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT or meta.get("unit") != json.loads(json.dumps(unit_identity)):
        return None
    bad = [f for f, h in _files(stem, meta[integrity.HASH]) if not f.exists() or integrity.digest(f) != h]
    if bad:
        # A part is scratch that its unit makes again, exactly: redo it rather than stop the build.
        print(f"{bad[0]}: its bytes do not match the checksum in {meta_path.name}; tokenizing that unit again",
              file=sys.stderr)
        return None
    return Part(stem, meta["tokens"], meta["docs"], meta["complete"], meta["cap"])


def _files(stem: Path, sums: dict) -> list[tuple[Path, str]]:
    return [(Path(f"{stem}.bin"), sums["bin"]), (Path(f"{stem}.len.npy"), sums["len"])]


@functools.lru_cache(maxsize=2)
def _tokenizer(tokenizer_json: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json)


def tokenize_unit(unit: Unit, unit_identity: dict, tokenizer_json: str, eos: int, dtype: str, cap: int,
                  stem: Path, report=None) -> Part:
    """Tokenize `unit` into the part at `stem`; `report(n)` is called with each batch's tokens."""
    tok = _tokenizer(tokenizer_json)
    tag = uuid.uuid4().hex[:8]
    tmp_bin, tmp_len = Path(f"{stem}.bin.tmp-{tag}"), Path(f"{stem}.len.tmp-{tag}.npy")
    lengths: list[int] = []
    total, complete, h = 0, False, integrity.hasher()
    try:
        with open(tmp_bin, "wb") as out:
            docs = unit.documents()
            while True:
                batch = [d for _, d in zip(range(ENCODE_BATCH_DOCS), docs)]
                if not batch:
                    complete = True
                    break
                flat: list[int] = []
                # encode_batch_fast skips character offsets, which a token stream never uses.
                for enc in tok.encode_batch_fast(batch):
                    ids = enc.ids
                    flat.extend(ids)
                    flat.append(eos)
                    lengths.append(len(ids) + 1)
                arr = np.asarray(flat, dtype=dtype)
                arr.tofile(out)
                h.update(arr)  # hashed as written: the part is not read back for its checksum
                total += len(flat)
                if report is not None:
                    report(len(flat))
                if total >= cap:
                    break
        np.save(tmp_len, np.asarray(lengths, dtype=np.uint32))
        os.replace(tmp_bin, f"{stem}.bin")
        os.replace(tmp_len, f"{stem}.len.npy")
    except BaseException:
        for p in (tmp_bin, tmp_len):
            p.unlink(missing_ok=True)
        raise
    meta = {"format": FORMAT, "unit": unit_identity, "tokens": total, "docs": len(lengths),
            "complete": complete, "cap": cap,
            integrity.HASH: {"bin": h.hexdigest(), "len": integrity.digest(Path(f"{stem}.len.npy"))}}
    write_atomic(Path(f"{stem}.json"), json.dumps(meta, sort_keys=True))
    return Part(stem, total, len(lengths), complete, cap)
