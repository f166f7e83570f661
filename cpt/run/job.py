"""What every stage of one run shares (the config, its data, MLflow, the cache), and the one way a
stage prefix is stored: its result, its cache entry, its MLflow run's tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from cpt.config.schema import RunConfig
from cpt.plan.gap import stage_gap_metrics
from cpt.plan.metrics import unigram_entropy
from cpt.plan.stages import Stage
from cpt.plan.walk import Step


@dataclass
class Job:
    cfg: RunConfig
    ctx: object  # experiment.RunContext: what Hydra knows about the job
    data: object  # data.prepare.PreparedData: the tokenizer and a shard per dataset
    tracker: object  # store.tracking.Tracker (rank 0) or NullTracker
    cache: object  # dist.rank_cache.RankCache
    say: Callable[[str], None]
    tags: dict = field(default_factory=dict)  # tags of every MLflow run of the job
    params: dict = field(default_factory=dict)  # params of every MLflow run of the job
    model: object = None  # built once, on first use; every stage trains it in place
    tasks: list = field(default_factory=list)  # the harness's resolved tasks (cpt/harness/stages.py)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.cfg.shift.datasets]

    def weights(self, entry, stage: Stage | None = None):
        """The model holding what `stage` starts from after cache entry `entry` (None: the seeded
        random initialisation; no stage: the entry's own, evaluated weights)."""
        if entry is None or self.model is None:
            import torch

            from cpt.model.hf import vocab_rows
            from cpt.model.spec import build_model

            torch.manual_seed(self.cfg.seed)
            self.model = build_model(self.cfg.model, vocab_rows(self.cfg.model, self.data.vocab_size))
        if entry is not None:
            entry.load_into(self.model, start_path(entry, stage))
        return self.model

    def prefix_tags(self, step: Step, **more) -> dict:
        return {**self.tags, **more, "cpt.kind": "prefix", "cpt.stage": step.stage.index, "cpt.prefix_key": step.key}

    def store_prefix(self, step: Step, log, model, result: dict, pre_anneal=None):
        """Cache the stage's weights (only those) and `result` ("val", "val_at_start", "end_tokens",
        "tokens", ...) with the fields every prefix entry has; returns the entry."""
        stage = step.stage
        result = {**result, "run_id": log.run_id, "stage": stage.index}
        if stage.init or (stage.from_scratch and not stage.replay):  # one dataset from random weights
            tokens = self.data.shards[self.names[stage.dataset]].array("train")
            result["unigram_entropy"] = unigram_entropy(tokens)
            log.log_metrics({"data/unigram_entropy": result["unigram_entropy"]}, 0)
        return self.cache.put(step.key, model.state_dict(), result, pre_anneal=pre_anneal)

    def inputs(self, stage: Stage) -> list[dict]:
        """The datasets of `stage` as MLflow inputs (tracking.RunLog.log_inputs), in chain order: the
        one it trains on (`training`; a union's whole mix), those it re-reads (`replay`), and the
        others it is evaluated on (`validation`). Source and digest: the shard's manifest and key."""
        import json

        mixed = {i for i, w in enumerate(stage.replay_weights) if w and stage.replay}
        out: dict[str, dict] = {}
        for i, name in enumerate(self.names):
            context = "training" if i == stage.dataset or (mixed and stage.from_scratch and i in mixed) \
                else "replay" if i in mixed else "validation"
            shard = self.data.shards[name]  # its source identity: what open_shard read from the manifest
            kind = (shard.source.get("source") or {}).get("type", "local")
            entry = {"name": name, "digest": shard.path.name.rsplit("-", 1)[-1], "source_type": kind,
                     "source": json.dumps(shard.source, sort_keys=True), "context": context,
                     "profile": json.dumps({"train_tokens": shard.train_tokens, "val_tokens": shard.val_tokens})}
            if name not in out or context == "training":  # D0 → D0: one input, the stage's own context
                out[name] = entry
        return list(out.values())

    def evaluate(self, model, names: list[str]) -> dict[str, float]:
        """Validation loss of datasets `names` for a model that is not being trained, on
        `eval_device`; the model goes back to the CPU, where the cache and the next stage want it."""
        from cpt.train.module import evaluate
        from cpt.train.trainer import val_loaders

        device = eval_device(self.cfg)
        loaders = val_loaders(self.cfg, self.data)
        losses = evaluate(model.to(device), {n: loaders[n] for n in names}, device)
        model.to("cpu")
        return losses


def stage_result(stage: Stage, metrics, offset: int, batch_tokens: int, anneal: int | None) -> dict:
    """The result of a trained stage as its cache entry keeps it (besides run id and stage): the
    losses of its final model (the moving average's with ema.use) and at step 0, its tokens, and for
    an annealing stage its pre-anneal point. `metrics`: the stage's StageMetrics."""
    evals = metrics.evals
    result = {"val": metrics.final(stage.steps), "val_at_start": evals[0], "end_tokens": offset + stage.tokens,
              "tokens": stage.tokens}
    if not stage.from_scratch and not stage.init:  # a continual stage: its stability gap (cpt/plan/gap.py)
        result["gap"] = stage_gap_metrics(evals, batch_tokens)
    if anneal is not None:
        result.update(pre_anneal_step=anneal, pre_anneal_tokens=offset + anneal * batch_tokens,
                      val_pre_anneal=evals[anneal])
    return result


def start_path(entry, stage: Stage | None):
    """The weights file `stage` starts from: the previous stage's annealed (evaluated) weights, or
    its pre-anneal weights where an infinite schedule continues."""
    return entry.pre_anneal if stage is not None and stage.from_pre_anneal else entry.weights


def eval_device(cfg: RunConfig) -> str:
    """Where a stage that is not being trained is evaluated (a loaded model.init, a cache hit
    that lacks a dataset): the run's GPU where it has one."""
    import torch

    return "cuda" if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
