"""Turn a run's shift into a tokenizer and one token shard per dataset (built once, reused).

Order matters for bad input: every dataset's source is resolved first (globs, files, the hub),
so a wrong path in the last dataset fails in a second, not after the first dataset's shard.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from cpt.config.schema import RunConfig
from cpt.data import shards as shard_io
from cpt.data.build import build_shard
from cpt.data.sources import source_identity, units
from cpt.data.tokenizer import eos_id, fingerprint, load_tokenizer
from cpt.errors import UserError

BPE_TRAINING_DOCS = 4000  # D0 documents the BPE learns from (~5 MB of text is plenty at 1k merges)


@dataclass
class PreparedData:
    tokenizer: object
    tokenizer_fp: str
    shards: dict[str, shard_io.Shard]  # by dataset name

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def _key(i: int) -> str:
    return f"shift.datasets.{i}.source"


def dataset_identity(cfg: RunConfig, i: int) -> dict:
    return {"source": source_identity(cfg.shift.datasets[i].source, _key(i))}


def shard_path(cfg: RunConfig, i: int, tokenizer_fp: str) -> Path:
    d = cfg.shift.datasets[i]
    key = shard_io.shard_key(dataset_identity(cfg, i), d.tokens, d.val_tokens, tokenizer_fp)
    return cfg.paths.root / "data" / f"{d.name}-{key}"


def prepare(cfg: RunConfig, progress: bool | None = None, workers: int | None = None,
            on_part=None) -> PreparedData:
    """Tokenizer and shards of every dataset; `progress` None = a bar when stderr is a terminal."""
    from cpt.store.writable import check_dir

    check_dir("paths.output_dir", cfg.paths.root)  # `cpt prepare` has no Hydra run to check it first
    sources = [units(d.source, _key(i)) for i, d in enumerate(cfg.shift.datasets)]
    tok = load_tokenizer(
        cfg.tokenizer,
        cfg.paths.root / "tokenizers",
        dataset_identity(cfg, 0),
        cfg.shift.bpe_vocab_size,
        lambda: itertools.islice(itertools.chain.from_iterable(u.documents() for u in sources[0]),
                                 BPE_TRAINING_DOCS),
    )
    fp = fingerprint(tok)
    eos = eos_id(tok)
    built, by_key = {}, {}
    for i, d in enumerate(cfg.shift.datasets):
        key = shard_io.shard_key(dataset_identity(cfg, i), d.tokens, d.val_tokens, fp)
        if key in by_key:  # a dataset read again (D0 → D0): one shard under both names
            built[d.name] = by_key[key]
            continue
        shard = build_shard(shard_path(cfg, i, fp), d.name, dataset_identity(cfg, i), sources[i],
                            tok, eos, d.tokens, d.val_tokens, fp, workers=workers,
                            progress=progress, on_part=on_part)
        _check_windows(shard, f"shift.datasets.{i}", cfg.model.seq_len)
        built[d.name] = by_key[key] = shard
    return PreparedData(tok, fp, built)


def shard_dirs(cfg: RunConfig) -> tuple[str | None, dict[str, Path]]:
    """The tokenizer's fingerprint and each dataset's shard directory, building nothing: (None, {})
    while the chain's BPE is not trained yet (then no shard exists either)."""
    tok = load_tokenizer(cfg.tokenizer, cfg.paths.root / "tokenizers", dataset_identity(cfg, 0),
                         cfg.shift.bpe_vocab_size, None)
    if tok is None:
        return None, {}
    fp = fingerprint(tok)
    return fp, {d.name: shard_path(cfg, i, fp) for i, d in enumerate(cfg.shift.datasets)}


def epochs(cfg: RunConfig, shards: dict) -> dict[str, float]:
    """{dataset: epochs} of the datasets whose budget re-reads their shard's training tokens
    (`shards` by name; a dataset without one yet is left out)."""
    return {d.name: d.tokens / s.train_tokens for d in cfg.shift.datasets
            if (s := shards.get(d.name)) is not None and s.train_tokens < d.tokens}


def check_budgets(cfg: RunConfig, data: PreparedData) -> dict[str, float]:
    """Each dataset's budget against its built shard, before any MLflow run: a budget beyond the
    training tokens would silently re-read the data, so it is an error unless shift.allow_epochs;
    returns {dataset: epochs} of the datasets read more than once (for the run's params)."""
    reads = epochs(cfg, data.shards)
    for i, d in enumerate(cfg.shift.datasets):
        shard = data.shards[d.name]
        if shard.val_tokens < d.val_tokens:
            raise UserError(f"shift.datasets.{i}.val_tokens={d.val_tokens}: dataset {d.name} has only "
                            f"{shard.val_tokens:,} validation tokens; allowed at most that (or more text)")
        if d.name in reads and not cfg.shift.allow_epochs:
            raise UserError(f"shift.datasets.{i}.tokens={d.tokens}: dataset {d.name} has only "
                            f"{shard.train_tokens:,} training tokens; allowed at most that, or "
                            f"shift.allow_epochs=true to read it {reads[d.name]:.2f} times")
    return reads


def _check_windows(shard, key: str, seq_len: int) -> None:
    """Each split must hold one window of seq_len + 1 tokens (inputs and shifted targets)."""
    for split, n in (("train", shard.train_tokens), ("val", shard.val_tokens)):
        if n < seq_len + 1:
            raise UserError(f"{key}: its source gives {n} {split} tokens, fewer than one sequence of "
                            f"model.seq_len + 1 = {seq_len + 1}; allowed: more text or a smaller model.seq_len")
