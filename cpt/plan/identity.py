"""The one canonical identity function: canonical JSON of resolved values, then a hash.

It names a stage prefix (the cache key of stages 0..k) and a whole run. What goes in is what
determines the weights; what stays out (device count, paths, tracking, dataset names) can change
without invalidating anything. The eval cadence is in the run's identity only: a denser one
trains the run again (its curves differ) from the same cached prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from cpt import __version__


def canonical_hash(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _major_minor() -> str:
    return ".".join(__version__.split(".")[:2])


def _tokenizer_identity(cfg) -> dict:
    # A BPE is a function of D0's source and its vocabulary size; a named/path tokenizer of itself.
    if cfg.tokenizer == "bpe":
        return {"bpe": cfg.shift.bpe_vocab_size, "trained_on": _source(cfg, 0)}
    if os.path.exists(cfg.tokenizer):  # a file: by its content, so an edited file is another tokenizer
        path = os.path.join(cfg.tokenizer, "tokenizer.json") if os.path.isdir(cfg.tokenizer) else cfg.tokenizer
        with open(path, "rb") as f:
            return {"name": cfg.tokenizer, "sha": hashlib.sha256(f.read()).hexdigest()[:16]}
    return {"name": cfg.tokenizer}


def _source(cfg, i: int) -> dict:
    from cpt.data.sources import source_identity

    return source_identity(cfg.shift.datasets[i].source, f"shift.datasets.{i}.source")


def _stage_identity(cfg, stage) -> dict:
    if stage.init:  # a loaded checkpoint: its weights are the stage, whatever D0's budget or recipe
        from cpt.model.hf import init_identity

        return {"init": init_identity(stage.init)}
    d = cfg.shift.datasets[stage.dataset]
    # ema.*: with ema.use the average is the stage's weights, and either way its curves; only
    # when on, so runs without it keep their keys
    ema = {"ema": dataclasses.asdict(cfg.ema)} if cfg.ema.decay is not None else {}
    return {
        **ema,
        "dataset": {"source": _source(cfg, stage.dataset), "tokens": d.tokens},
        # its place in the chain seeds the order its windows are read in (windows.StageSequences)
        "position": stage.dataset,
        "tokens": stage.tokens,
        "schedule": dataclasses.asdict(stage.schedule),
        "replay": stage.replay,
        "replay_from": [_source(cfg, i) for i in range(len(stage.replay_weights))],
        "replay_weights": list(stage.replay_weights),
        "from_scratch": stage.from_scratch,
        "init": stage.init,
        "from_pre_anneal": stage.from_pre_anneal,
    }


def prefix_identity(cfg, stages, k: int) -> dict:
    """Everything that determines the weights after stages 0..k."""
    return {
        "cpt": _major_minor(),
        "model": {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "init"},  # init: stage 0
        "tokenizer": _tokenizer_identity(cfg),
        "seed": cfg.seed,
        "seq_len": cfg.model.seq_len,
        "batch_tokens": cfg.batch.tokens,
        "precision": cfg.trainer.precision,
        "stages": [_stage_identity(cfg, s) for s in stages[: k + 1]],
    }


def prefix_key(cfg, stages, k: int) -> str:
    return canonical_hash(prefix_identity(cfg, stages, k))


def run_key(cfg, stages, merge_point: dict | None = None) -> str:
    """The identity of a whole run: the full chain plus the knobs that only the run itself has.
    A merge is one run per point (`merge_point`: {"alpha": α}, or a soup's runs and weights), so
    the list of α is not part of it: adding an α to merge.alphas re-evaluates only the new one."""
    # The eval cadence decides the curves a run logs (not its weights): a denser one is another run.
    identity = {"chain": prefix_identity(cfg, stages, len(stages) - 1), "recipe": cfg.recipe.name,
                "objective": cfg.objective, "eval": dataclasses.asdict(cfg.eval)}
    if cfg.recipe.name == "merge":
        identity["merge"] = merge_point or dataclasses.asdict(cfg.merge)
    return canonical_hash(identity)
