"""One run: plan → data → cached prefix (or train it) → the run's own stage → final metrics.

This is what the Hydra task function calls; it reads top to bottom like the papers' recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpt.cache import PrefixCache
from cpt.config import RunConfig
from cpt.identity import prefix_key, run_key
from cpt.metrics import final_metrics
from cpt.plan import Stage, build_plan, chain_plan


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
    skipped: bool = False  # a finished run with this identity existed: nothing was trained

    def objective(self, objective):
        if isinstance(objective, (list, tuple)):
            return tuple(self.metrics[m] for m in objective)
        return self.metrics[objective]


def run(cfg: RunConfig, ctx: RunContext, say=print, dist=None) -> RunResult:
    """`dist`: this process's rank of the job (cpt/dist.py). Rank 0 alone logs, writes the cache and
    checkpoints, and decides what is cached or finished; the other ranks follow (cpt/rank_cache.py)."""
    import torch

    from cpt.dist import SINGLE
    from cpt.rank_cache import RankCache

    from cpt.data.prepare import prepare
    from cpt.model import build_model, flops_per_token
    from cpt.resume import train_resumable
    from cpt.tracking import IDENTITY_TAG, NullTracker, Tracker, environment_tags
    from cpt.checkpoints import check_init, vocab_rows

    check_init(cfg.model)  # a bad model.init fails before the data is prepared
    stages = build_plan(cfg)
    names = [d.name for d in cfg.shift.datasets]
    dist = dist or SINGLE
    # first: a tracking server that does not answer stops us before any work
    tracker = Tracker(cfg.tracking) if dist.is_zero else NullTracker()
    cache = RankCache(PrefixCache(cfg.paths.root / "cache"), dist)
    rkey = run_key(cfg, stages)
    if (done := dist.broadcast(_finished(cfg, stages, tracker, cache.cache, rkey, ctx, say) if dist.is_zero else None)):
        return done
    data = dist.first(prepare, cfg)  # rank 0 builds the shards, the others open them
    tags = {**environment_tags(), "cpt.sweep_id": ctx.sweep_id, "cpt.recipe": cfg.recipe.name,
            **{f"cpt.choice.{k}": v for k, v in ctx.choices.items()}, **ctx.extra_tags}
    params = {**ctx.params, **ctx.choices}

    model = None

    def weights(entry, stage: Stage | None = None):
        """The model holding what `stage` starts from after cache entry `entry` (None: the seeded
        random initialisation; no stage: the entry's own, evaluated weights)."""
        nonlocal model
        if entry is None or model is None:
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.model, vocab_rows(cfg.model, data.vocab_size))
        if entry is not None:
            entry.load_into(model, _start_path(entry, stage))
        return model

    # The chain's last stage is trained inside the run's own MLflow run; a baseline's stages are
    # cached like prefixes (a sweep over the continual knobs trains a union once). union and
    # scratch also need the chain's stage 0: the D0 model their forgetting is measured against.
    own = stages[-1] if cfg.recipe.name == "cpt" else None
    walk = [(prefix_key(cfg, stages, s.index), s) for s in (stages[:-1] if own else stages)]
    if cfg.recipe.name in ("union", "scratch"):
        chain = chain_plan(cfg)
        walk.insert(0, (prefix_key(cfg, chain, 0), chain[0]))
    entries, hits, entry, offset = [], [], None, 0
    for i, (key, stage) in enumerate(walk):
        if stage.from_scratch:
            entry, offset = None, 0
        entry, hit = _ensure(cfg, ctx, key, stage, entry, weights, data, tracker, cache, tags, params, offset, say)
        entries.append(entry)
        hits.append(hit)
        # Tokens the next stage's starting weights have seen: an infinite schedule continues from
        # before the anneal, so the annealed tail is a branch off the chain, not part of it.
        nxt = walk[i + 1][1] if i + 1 < len(walk) else own
        offset = entry.result["pre_anneal_tokens" if nxt is not None and nxt.from_pre_anneal else "end_tokens"]
    # DESIGN.md's references: each dataset's loss at the end of the stage that trained on it.
    # A baseline has one reference, the chain's stage-0 model (2403.08763's D0-only model).
    ref = {names[s.dataset]: e.result["val"][names[s.dataset]] for (_, s), e in zip(walk, entries)
           if own or s is walk[0][1]}

    last = stages[-1]
    run_tags = {**tags, "cpt.kind": "run", "cpt.stage": last.index, "cpt.run_key": rkey,
                "cpt.init_weights": str(_start_path(entry, own)) if own else "",
                "cpt.prefix_key": entry.key, "cpt.prefix_run_id": entry.result["run_id"],
                "cpt.prefix_cached": all(hits), "cpt.reference_key": entries[0].key}
    with cache.lock(f"run-{rkey}"):  # one job trains a run; a duplicate waits, then finds it finished
        if (done := dist.broadcast(_finished(cfg, stages, tracker, cache.cache, rkey, ctx, say) if dist.is_zero else None)):
            return done
        st = None
        if own:  # resumes from its own checkpoint, in its own MLflow run, if a crash cut it short
            say(f"stage {own.index} ({names[own.dataset]}): {own.steps} steps, {own.tokens:,} tokens")
            st = train_resumable(cfg, own, f"run-{rkey}", weights(entry, own), data, tracker, ctx.run_name,
                                 params, run_tags, offset, f"stage {own.index} {names[own.dataset]}", say)
            log, cb = st.log, st.metrics
            final, last_at_start, end = cb.evals[own.steps], cb.evals[0][names[-1]], offset + own.tokens
        else:  # nothing to train: the final losses are the cached model's
            log = tracker.start_run(ctx.run_name, params, run_tags)
            final, last_at_start, end = entry.result["val"], entries[0].result["val"][names[-1]], offset
        try:
            if ctx.resolved_yaml and not (st and st.reopened):
                log.log_text(ctx.resolved_yaml, "config.yaml")
            metrics = final_metrics(names, final, ref, last_at_start)
            # Tokens into this run's model, and those of it that are this recipe's own (not a chain
            # prefix shared with other runs): cpt its last stage, union/scratch their one stage.
            shared = stages[:-1] if own else stages if cfg.recipe.name == "upstream-only" else []
            metrics["compute/tokens_with_prefix"] = sum(s.tokens for s in stages)
            metrics["compute/tokens"] = metrics["compute/tokens_with_prefix"] - sum(s.tokens for s in shared)
            metrics["compute/flops"] = metrics["compute/tokens"] * flops_per_token(cfg.model, data.vocab_size)
            log.log_metrics(metrics, end)
            if cfg.export and dist.is_zero:
                from cpt.checkpoints import export_dir, export_model

                final_model = model if own else weights(entry)
                path = export_model(final_model, data.tokenizer, export_dir(cfg.paths.root, rkey))
                log.set_tags({"cpt.export_dir": str(path)})
                say(f"exported the final model (Hugging Face format) to {path}")
            log.set_tags({IDENTITY_TAG: rkey})  # from now on a re-run of this identity is skipped
            log.end("FINISHED")
        except BaseException:
            log.end("FAILED")
            raise
        if st and dist.is_zero:
            st.checkpoints.clear()  # the run finished: its periodic checkpoints go
    return RunResult(metrics, log.run_id, hits, entries[0].result)


def _finished(cfg, stages, tracker, cache, rkey, ctx, say) -> RunResult | None:
    """The result of a FINISHED run with this identity (a re-run sweep skips it), unless force."""
    from cpt.resume import checkpoints_for, tidy_leftover

    done = None if cfg.force else tracker.finished_run(rkey)
    if done is None:
        return None
    say(f"run {rkey[:12]} finished already as MLflow run {done.info.run_id}: skipped (force=true trains it again)")
    if ctx.sweep_id:  # it belongs to this sweep's table too
        tracker.set_tags(done.info.run_id, {"cpt.sweep_id": ctx.sweep_id})
    tidy_leftover(checkpoints_for(cfg, f"run-{rkey}"), tracker)  # a kill after FINISHED, before deleting them
    reference = chain_plan(cfg) if cfg.recipe.name in ("union", "scratch") else stages
    s0 = cache.get(prefix_key(cfg, reference, 0))
    # Every cached stage the run would walk (see run()) was there: all hits.
    walked = len(stages) - 1 if cfg.recipe.name == "cpt" else len(stages) + (reference is not stages)
    return RunResult(dict(done.data.metrics), done.info.run_id, [True] * walked, s0.result if s0 else {},
                     skipped=True)


def _start_path(entry, stage: Stage | None):
    """The weights file `stage` starts from: the previous stage's annealed (evaluated) weights, or
    its pre-anneal weights where an infinite schedule continues."""
    return entry.pre_anneal if stage is not None and stage.from_pre_anneal else entry.weights


def _ensure(cfg, ctx, key, stage: Stage, prev, weights, data, tracker, cache, tags, params, offset, say):
    """(entry, cache hit) of the stage that follows the entry `prev` (None: from scratch): from
    the cache, or trained now, once, and stored. A hit evaluates the datasets it lacks."""
    from cpt.lit_module import evaluate
    from cpt.recipes import stage_label
    from cpt.resume import checkpoints_for, tidy_leftover
    from cpt.train import val_loaders

    names = [d.name for d in cfg.shift.datasets]
    with cache.lock(key):
        cached = cache.get(key)
        hit = cached is not None
        if not hit and stage.init:  # model.init: the pretrained checkpoint is stage 0
            from cpt.init_stage import load_prefix

            cached = load_prefix(cfg, stage, key, weights(None), data, tracker, tags, params, say)
        elif not hit:
            init = str(_start_path(prev, stage)) if prev is not None else ""
            parent = prev.result.get("run_id", "") if prev is not None else ""  # the chain, for reports
            cached = _train_prefix(cfg, ctx, stage, key, weights(prev, stage), data, tracker,
                                   {**tags, "cpt.init_weights": init, "cpt.prefix_run_id": parent},
                                   params, offset, say, cache)
        else:
            say(f"stage {stage.index} ({stage_label(cfg, stage)}): cached prefix {key[:12]} "
                f"(trained by MLflow run {cached.result['run_id']}), reused")
            if cache.dist.is_zero:
                tidy_leftover(checkpoints_for(cfg, f"prefix-{key}"), tracker)
        missing = [n for n in names if n not in cached.result["val"]]
        if missing:  # a new chain evaluates datasets the entry has not seen, once
            loaders = val_loaders(cfg, data)
            cache.add_val(cached, evaluate(weights(cached), {n: loaders[n] for n in missing}, "cpu"))
    return cached, hit


def _train_prefix(cfg, ctx, stage: Stage, key, model, data, tracker, tags, params, offset, say, cache):
    from cpt.callbacks import PreAnneal
    from cpt.schedules import anneal_start_step
    from cpt.recipes import stage_label
    from cpt.resume import train_resumable

    name = stage_label(cfg, stage)
    say(f"stage {stage.index} ({name}): training prefix {key[:12]} — {stage.steps} steps, {stage.tokens:,} tokens")
    anneal = anneal_start_step(stage.schedule, stage.steps)
    snap = PreAnneal(anneal) if anneal is not None else None
    st = train_resumable(cfg, stage, f"prefix-{key}", model, data, tracker, f"prefix-{stage.index}-{key[:8]}",
                         params, {**tags, "cpt.kind": "prefix", "cpt.stage": stage.index, "cpt.prefix_key": key},
                         offset, f"stage {stage.index} {name}", say, callbacks=[snap] if snap else [])
    log, cb = st.log, st.metrics
    try:
        val = cb.evals[stage.steps]
        result = {"val": val, "val_at_start": cb.evals[0], "end_tokens": offset + stage.tokens,
                  "tokens": stage.tokens, "run_id": log.run_id, "stage": stage.index}
        if snap:
            result.update(pre_anneal_step=anneal, pre_anneal_tokens=offset + anneal * cfg.batch.tokens,
                          val_pre_anneal=cb.evals[anneal])
        if stage.from_scratch and not stage.replay:  # one dataset from random weights (not a union)
            result["unigram_entropy"] = unigram_entropy(data.shards[cfg.shift.datasets[stage.dataset].name].array("train"))
            log.log_metrics({"data/unigram_entropy": result["unigram_entropy"]}, 0)
        entry = cache.put(key, model.state_dict(), result, pre_anneal=snap.weights if snap else None)  # weights only
        log.end("FINISHED")
    except BaseException:
        log.end("FAILED")
        raise
    if cache.dist.is_zero:
        st.checkpoints.clear()  # the cache entry replaces them
    return entry


def unigram_entropy(tokens) -> float:
    """Entropy (nats/token) of the token frequencies: what a model without context could reach."""
    import numpy as np

    counts = np.bincount(np.asarray(tokens)).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
