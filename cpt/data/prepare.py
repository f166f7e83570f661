"""Turn a run's shift into a tokenizer and one token shard per dataset (built once, reused)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from cpt.config import RunConfig
from cpt.data import shards as shard_io
from cpt.data.sources import documents
from cpt.data.tokenizer import eos_id, fingerprint, load_tokenizer

BPE_TRAINING_DOCS = 4000  # D0 documents the BPE learns from (~5 MB of text is plenty at 1k merges)


@dataclass
class PreparedData:
    tokenizer: object
    tokenizer_fp: str
    shards: dict[str, shard_io.Shard]  # by dataset name

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def shard_path(cfg: RunConfig, i: int, tokenizer_fp: str) -> Path:
    d = cfg.shift.datasets[i]
    key = shard_io.shard_key(d.identity(), d.tokens, d.val_tokens, tokenizer_fp)
    return cfg.paths.root / "data" / f"{d.name}-{key}"


def prepare(cfg: RunConfig, progress=None) -> PreparedData:
    d0 = cfg.shift.datasets[0]
    tok = load_tokenizer(
        cfg.tokenizer,
        cfg.paths.root / "tokenizers",
        d0.identity(),
        cfg.shift.bpe_vocab_size,
        lambda: itertools.islice(documents(d0.source, "shift.datasets.0.source"), BPE_TRAINING_DOCS),
    )
    fp = fingerprint(tok)
    eos = eos_id(tok)
    built = {}
    for i, d in enumerate(cfg.shift.datasets):
        path = shard_path(cfg, i, fp)
        shard = shard_io.open_shard(path, fp)
        if shard is None:
            docs = documents(d.source, f"shift.datasets.{i}.source")
            tick = progress(f"tokenizing {d.name}", d.tokens) if progress else None
            shard = shard_io.build_shard(path, d.name, d.identity(), docs, tok, eos, d.tokens,
                                         d.val_tokens, fp, progress=tick)
        built[d.name] = shard
    return PreparedData(tok, fp, built)
