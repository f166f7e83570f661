"""One run: plan → data → cached prefix (or train it) → the run's own stage → final metrics.

This is what the Hydra task function calls; it reads top to bottom like the papers' recipe.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from cpt.cache import PrefixCache
from cpt.config import RunConfig
from cpt.identity import prefix_key, run_key
from cpt.metrics import final_metrics
from cpt.plan import Stage, build_plan


@dataclass
class RunContext:
    """What Hydra knows about the job and the config does not."""

    choices: dict = field(default_factory=dict)  # group -> option, e.g. {"model": "tiny"}
    params: dict = field(default_factory=dict)  # the flattened resolved config
    resolved_yaml: str = ""
    sweep_id: str = ""  # the multirun's directory name
    run_name: str = "run"
    extra_tags: dict = field(default_factory=dict)


@dataclass
class RunResult:
    metrics: dict[str, float]
    run_id: str
    prefix_hits: list[bool]
    stage0: dict = field(default_factory=dict)  # the cached stage-0 result (val losses, unigram entropy)

    def objective(self, objective):
        if isinstance(objective, (list, tuple)):
            return tuple(self.metrics[m] for m in objective)
        return self.metrics[objective]


def run(cfg: RunConfig, ctx: RunContext, say=print) -> RunResult:
    import torch

    from cpt.data.prepare import prepare
    from cpt.model import build_model
    from cpt.tracking import Tracker, environment_tags
    from cpt.train import train_stage, val_loaders
    from cpt.lit_module import evaluate

    from cpt.checkpoints import check_init

    check_init(cfg.model)  # a bad model.init fails before the data is prepared
    stages = build_plan(cfg)
    names = [d.name for d in cfg.shift.datasets]
    data = prepare(cfg)
    tracker = Tracker(cfg.tracking)
    cache = PrefixCache(cfg.paths.root / "cache")
    tags = {**environment_tags(), "cpt.sweep_id": ctx.sweep_id, "cpt.recipe": cfg.recipe.name,
            **{f"cpt.choice.{k}": v for k, v in ctx.choices.items()}, **ctx.extra_tags}
    params = {**ctx.params, **ctx.choices}

    torch.manual_seed(cfg.seed)
    from cpt.checkpoints import vocab_rows

    model = build_model(cfg.model, vocab_rows(cfg.model, data.vocab_size))
    evals = {name: dict() for name in names}  # dataset -> its loss at the end of its own stage
    offset, hits, entry, stage0 = 0, [], None, {}
    for stage in stages[:-1]:  # the prefix: cached, or trained once and cached
        key = prefix_key(cfg, stages, stage.index)
        with cache.lock(key):
            cached = cache.get(key)
            if cached is None:
                if stage.init:  # model.init: the pretrained checkpoint is stage 0
                    from cpt.init_stage import load_prefix

                    cached = load_prefix(cfg, stage, key, model, data, tracker, tags, params, say)
                else:
                    init = _load_start(model, entry, stage)
                    cached = _train_prefix(cfg, ctx, stage, key, model, data, tracker,
                                           {**tags, "cpt.init_weights": init}, params, offset, say)
                hits.append(False)
            else:
                hits.append(True)
                say(f"stage {stage.index} ({names[stage.dataset]}): cached prefix {key[:12]} "
                    f"(trained by MLflow run {cached.result['run_id']}), reused")
            missing = [n for n in names if n not in cached.result["val"]]
            if missing:  # a new chain evaluates datasets the entry has not seen, once
                model.load_state_dict(cached.load_weights())
                loaders = val_loaders(cfg, data)
                cache.add_val(cached, evaluate(model, {n: loaders[n] for n in missing}, "cpu"))
        entry = cached
        stage0 = stage0 or entry.result
        evals[names[stage.dataset]] = entry.result["val"][names[stage.dataset]]
        # Tokens the next stage's starting weights have seen: an infinite schedule continues from
        # before the anneal, so the annealed tail is a branch off the chain, not part of it.
        offset = entry.result["pre_anneal_tokens" if stages[stage.index + 1].from_pre_anneal else "end_tokens"]

    last = stages[-1]
    init = _load_start(model, entry, last)
    run_tags = {**tags, "cpt.kind": "run", "cpt.stage": last.index, "cpt.run_key": run_key(cfg, stages),
                "cpt.init_weights": init,
                "cpt.prefix_key": entry.key if entry else "", "cpt.prefix_run_id": entry.result["run_id"] if entry else "",
                "cpt.prefix_cached": all(hits)}
    log = tracker.start_run(ctx.run_name, params, run_tags)
    if ctx.resolved_yaml:
        log.log_text(ctx.resolved_yaml, "config.yaml")
    try:
        say(f"stage {last.index} ({names[last.dataset]}): {last.steps} steps, {last.tokens:,} tokens")
        cb = train_stage(cfg, last, model, data, log.log_metrics, offset, f"stage {last.index} {names[last.dataset]}")
        first, final = cb.evals[0], cb.evals[last.steps]
        metrics = final_metrics(names, final, evals, first[names[-1]])
        prefix_tokens = sum(s.tokens for s in stages[:-1])
        metrics["compute/tokens"] = last.tokens
        metrics["compute/tokens_with_prefix"] = last.tokens + prefix_tokens
        from cpt.model import flops_per_token

        metrics["compute/flops"] = last.tokens * flops_per_token(cfg.model, data.vocab_size)
        log.log_metrics(metrics, offset + last.tokens)
        if cfg.export:
            from cpt.checkpoints import export_dir, export_model

            path = export_model(model, data.tokenizer, export_dir(cfg.paths.root, run_tags["cpt.run_key"]))
            log.set_tags({"cpt.export_dir": str(path)})
            say(f"exported the final model (Hugging Face format) to {path}")
        log.end("FINISHED")
    except BaseException:
        log.end("FAILED")
        raise
    return RunResult(metrics, log.run_id, hits, stage0)


def _load_start(model, entry, stage: Stage) -> str:
    """Load the weights `stage` starts from: the previous stage's annealed (evaluated) weights,
    or its pre-anneal weights where an infinite schedule continues. Returns the file ('' = a
    fresh model)."""
    if entry is None:
        return ""
    path = entry.pre_anneal if stage.from_pre_anneal else entry.weights
    model.load_state_dict(entry.load_weights(path))
    return str(path)


def _train_prefix(cfg, ctx, stage: Stage, key, model, data, tracker, tags, params, offset, say):
    from cpt.callbacks import PreAnneal
    from cpt.schedules import anneal_start_step
    from cpt.train import train_stage

    name = cfg.shift.datasets[stage.dataset].name
    say(f"stage {stage.index} ({name}): training prefix {key[:12]} — {stage.steps} steps, {stage.tokens:,} tokens")
    log = tracker.start_run(f"prefix-{stage.index}-{key[:8]}", params,
                            {**tags, "cpt.kind": "prefix", "cpt.stage": stage.index, "cpt.prefix_key": key})
    try:
        anneal = anneal_start_step(stage.schedule, stage.steps)
        snap = PreAnneal(anneal) if anneal is not None else None
        cb = train_stage(cfg, stage, model, data, log.log_metrics, offset, f"stage {stage.index} {name}",
                         callbacks=[snap] if snap else [])
        val = cb.evals[stage.steps]
        result = {"val": val, "val_at_start": cb.evals[0], "end_tokens": offset + stage.tokens,
                  "tokens": stage.tokens, "run_id": log.run_id, "stage": stage.index}
        if snap:
            result.update(pre_anneal_step=anneal, pre_anneal_tokens=offset + anneal * cfg.batch.tokens,
                          val_pre_anneal=cb.evals[anneal])
        if stage.index == 0:
            result["unigram_entropy"] = unigram_entropy(data.shards[name].array("train"))
            log.log_metrics({"data/unigram_entropy": result["unigram_entropy"]}, 0)
        entry = PrefixCache(cfg.paths.root / "cache").put(key, model.state_dict(), result,
                                                          pre_anneal=snap.state_dict if snap else None)
        log.end("FINISHED")
    except BaseException:
        log.end("FAILED")
        raise
    return entry


def unigram_entropy(tokens) -> float:
    """Entropy (nats/token) of the token frequencies: what a model without context could reach."""
    import numpy as np

    counts = np.bincount(np.asarray(tokens)).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
