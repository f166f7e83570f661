"""One run: plan → data → for each stage: cached or trained → final metrics → MLflow.

This is what the Hydra task function calls; `run` reads top to bottom like the papers' recipe.
Which stages a recipe walks, which one is the run's own and which are the references of
`forgetting` is decided once, in cpt/plan/walk.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpt.config.schema import RunConfig
from cpt.harness.stages import final_scores, harness_tasks, keep, score_entry
from cpt.plan.identity import prefix_key, run_key
from cpt.plan.metrics import final_metrics
from cpt.plan.stages import build_plan
from cpt.plan.walk import Step, Walk, walk
from cpt.run.job import Job, stage_result, start_path
from cpt.store.prefix_cache import PrefixCache
from cpt.store.run_status import run_status

EXAMPLE_TEXT = "The history of"  # the input example of an exported model's MLflow pipeline


@dataclass
class RunContext:
    """What Hydra knows about the job and the config does not."""

    choices: dict = field(default_factory=dict)  # group -> option, e.g. {"model": "tiny"}
    params: dict = field(default_factory=dict)  # the flattened resolved config
    resolved_yaml: str = ""
    sweep_id: str = ""  # the multirun's directory name
    description: str = ""  # the run's plan (cpt/run/dry_run.py), its MLflow description
    run_name: str = "run"  # where `overrides` is empty (cpt/sweep/names.py names the others)
    extra_tags: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)  # the job's own, as Hydra hands them


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
    """`dist`: this process's rank of the job (cpt/dist/ranks.py). Rank 0 alone logs, writes the
    cache and checkpoints, and decides what is cached or finished; the other ranks follow
    (cpt/dist/rank_cache.py)."""
    from cpt.data.prepare import check_budgets, prepare
    from cpt.dist.rank_cache import RankCache
    from cpt.dist.ranks import SINGLE
    from cpt.model.hf import check_init
    from cpt.store.tracking import NullTracker, Tracker

    check_init(cfg.model)  # a bad model.init fails before the data is prepared
    tasks = harness_tasks(cfg)  # likewise a missing task file, or a hub task offline
    stages = build_plan(cfg)
    plan = walk(cfg, stages)
    dist = dist or SINGLE
    # first: a tracking server that does not answer stops us before any work
    tracker = Tracker(cfg.tracking) if dist.is_zero else NullTracker()
    parent = tracker.sweep_parent(ctx.sweep_id)  # made by the multirun's callback (cpt/sweep/hydra_callbacks.py)
    ctx = _described(cfg, ctx, parent) if dist.is_zero else ctx
    job = Job(cfg, ctx, None, tracker, RankCache(PrefixCache(cfg.paths.root / "cache"), dist), say)
    job.tags, job.params, job.tasks = _job_tags(cfg, ctx, parent), {**ctx.params, **ctx.choices}, tasks
    rkey = run_key(cfg, stages)
    if (done := dist.broadcast(_finished(job, plan, rkey) if dist.is_zero else None)):
        return done
    job.data = dist.first(prepare, cfg)  # rank 0 builds the shards, the others open them
    job.params.update({f"data.{n}.epochs": round(e, 3) for n, e in check_budgets(cfg, job.data).items()})
    if cfg.recipe.name == "merge":  # trains nothing itself; the cpt run it reads is trained by `run`
        from cpt.run.merge import run_merge

        return RunResult(*run_merge(job, plan, stages, lambda c, x: run(c, x, say, dist)))
    entries, hits, offset = _walk_cached(job, plan)
    with job.cache.lock(f"run-{rkey}"):  # one job trains a run; a duplicate waits, then finds it finished
        if (done := dist.broadcast(_finished(job, plan, rkey) if dist.is_zero else None)):
            return done
        log, metrics = _final_stage(job, plan, stages, entries, hits, offset, rkey)
    return RunResult(metrics, log.run_id, hits, entries[0].result)


def _described(cfg: RunConfig, ctx: RunContext, parent: dict | None) -> RunContext:
    """The run's name (the keys its sweep varies, or its overrides) and its plan, which the MLflow
    UI shows as the run's description: what `dry_run=true` prints, before any work."""
    import dataclasses

    from cpt.run.dry_run import describe
    from cpt.sweep.names import run_name

    swept = parent["tags"].get("cpt.swept_keys", "").split(",") if parent else None
    name = run_name(ctx.overrides, swept) if ctx.overrides else ctx.run_name
    return dataclasses.replace(ctx, run_name=name, description=describe(cfg, ctx.choices))


def _job_tags(cfg: RunConfig, ctx: RunContext, parent: dict | None) -> dict:
    from cpt.store.tracking import PARENT_TAG, SWEEP_IDS_TAG, environment_tags

    sweep = {SWEEP_IDS_TAG: ctx.sweep_id} if ctx.sweep_id else {}
    if parent:  # the UI nests the job's runs (and the prefixes it trains) under the sweep's row
        sweep[PARENT_TAG] = parent["run_id"]
    return {**environment_tags(), "cpt.sweep_id": ctx.sweep_id, **sweep, "cpt.recipe": cfg.recipe.name,
            "cpt.overrides": " ".join(ctx.overrides), **{f"cpt.choice.{k}": v for k, v in ctx.choices.items()},
            **ctx.extra_tags}


def _walk_cached(job: Job, plan: Walk):
    """Every cached stage of the walk, from the cache or trained now: (entries, hits, the tokens
    the run's own stage starts from)."""
    entries, hits, entry, offset = [], [], None, 0
    for i, step in enumerate(plan.cached):
        if step.stage.from_scratch:
            entry, offset = None, 0
        entry, hit = _ensure(job, step, entry, offset)
        entries.append(entry)
        hits.append(hit)
        score_entry(job, plan, i, entry)  # task scores beside the losses (harness.at)
        # Tokens the next stage's starting weights have seen: an infinite schedule continues from
        # before the anneal, so the annealed tail is a branch off the chain, not part of it.
        nxt = plan.next_stage(i)
        offset = entry.result["pre_anneal_tokens" if nxt is not None and nxt.from_pre_anneal else "end_tokens"]
    return entries, hits, offset


def _final_stage(job: Job, plan: Walk, stages, entries, hits, offset, rkey):
    """Train the run's own stage (or, for a baseline, take the cached model's losses), then the
    final metrics, the export and the identity tag, in the run's own MLflow run."""
    from cpt.store.tracking import IDENTITY_TAG

    cfg, own, entry, names = job.cfg, plan.own, entries[-1], job.names
    # The references of `forgetting` (docs/metrics.md): each dataset's loss at the end of the
    # stage that trained on it; a baseline's one reference is the chain's stage-0 model.
    ref = {names[s.stage.dataset]: e.result["val"][names[s.stage.dataset]]
           for s, e in zip(plan.cached, entries) if s.is_reference}
    run_tags = {**job.tags, "cpt.kind": "run", "cpt.stage": stages[-1].index, "cpt.run_key": rkey,
                "cpt.init_weights": str(start_path(entry, own)) if own else "",
                "cpt.prefix_key": entry.key, "cpt.prefix_run_id": entry.result["run_id"],
                "cpt.prefix_cached": all(hits), "cpt.reference_key": entries[0].key,
                "mlflow.note.content": job.ctx.description}
    st, final_ema = None, None
    if own:  # resumes from its own checkpoint, in its own MLflow run, if a crash cut it short
        st, snap = _train_own(job, own, entry, offset, run_tags, rkey)
        log, final, last_at_start, end = st.log, st.metrics.final(own.steps), st.metrics.evals[0][names[-1]], \
            offset + own.tokens
        final_ema = st.metrics.evals_ema.get(own.steps)
    else:  # nothing to train: the final losses are the cached model's
        log = job.tracker.start_run(job.ctx.run_name, job.params, run_tags)
        log.log_inputs(job.inputs(plan.cached[-1].stage))
        final, last_at_start, end = entry.result["val"], entries[0].result["val"][names[-1]], offset
    with run_status(log):
        if job.ctx.resolved_yaml and not (st and st.reopened):
            log.log_text(job.ctx.resolved_yaml, "config.yaml")
        metrics = final_metrics(names, final, ref, last_at_start, final_ema)
        metrics.update(_compute(job, plan, stages))
        harness, scores = final_scores(job, plan, entries, own, end, log)
        metrics.update(harness)
        metrics.update(_gaps(plan, entries, st, cfg.batch.tokens))
        log.log_metrics(metrics, end)
        if cfg.export and job.cache.dist.is_zero:
            _export(job, log, job.model if own else job.weights(entry), rkey)
        if st:  # the final weights, cached by the chain's prefix key: what recipe=merge reads
            _keep_final(job, Step(prefix_key(cfg, stages, len(stages) - 1), own, False), st, snap, offset)
            if scores:  # the final model's task scores, kept in that entry too
                keep(job, job.cache.get(prefix_key(cfg, stages, len(stages) - 1)), scores)
        log.set_tags({IDENTITY_TAG: rkey})  # from now on a re-run of this identity is skipped
    if st and job.cache.dist.is_zero:
        st.checkpoints.clear()  # the run finished: its periodic checkpoints go
    return log, metrics


def _gaps(plan: Walk, entries, st, batch_tokens: int) -> dict[str, float]:
    """Stability-gap metrics of every continual stage: the own stage's from its evals
    (gap/<dataset>/…), earlier ones' from their cache entries (gap/stage<k>/<dataset>/…)."""
    from cpt.plan.gap import stage_gap_metrics, staged

    out = {}
    for step, entry in zip(plan.cached, entries):
        if "gap" in entry.result and not step.stage.from_scratch:
            out.update(staged(entry.result["gap"], step.stage.index))
    if st is not None and not plan.own.from_scratch:
        out.update(stage_gap_metrics(st.metrics.evals, batch_tokens))
    return out


def _compute(job: Job, plan: Walk, stages) -> dict[str, float]:
    """Tokens into this run's model, and those of it that are this recipe's own (not a chain
    prefix shared with other runs): cpt its last stage, union/scratch their one stage."""
    from cpt.model.spec import flops_per_token

    with_prefix = sum(s.tokens for s in stages)
    own = with_prefix - sum(s.tokens for s in plan.shared)
    return {"compute/tokens_with_prefix": with_prefix, "compute/tokens": own,
            "compute/flops": own * flops_per_token(job.cfg.model, job.data.vocab_size)}


def _train_own(job: Job, own, entry, offset: int, run_tags: dict, rkey: str):
    from cpt.plan.schedules import anneal_start_step
    from cpt.train.callbacks import PreAnneal
    from cpt.train.resume import StageSpec, train_resumable

    name = job.names[own.dataset]
    job.say(f"stage {own.index} ({name}): {own.steps} steps, {own.tokens:,} tokens")
    spec = StageSpec(own, f"run-{rkey}", job.ctx.run_name, run_tags, offset, f"stage {own.index} {name}")
    anneal = anneal_start_step(own.schedule, own.steps)  # a longer chain continues from its entry's pre-anneal copy
    snap = PreAnneal(anneal) if anneal is not None else None
    return train_resumable(job, spec, job.weights(entry, own), callbacks=[snap] if snap else []), snap


def _keep_final(job: Job, step: Step, st, snap, offset: int) -> None:
    """Cache the run's final weights as the entry of its whole chain (a longer chain reuses it as
    a prefix, `cpt cache rm` removes it); an entry already there (a forced re-run) is kept."""
    if job.cache.get(step.key) is not None:
        return
    result = stage_result(step.stage, st.metrics, offset, job.cfg.batch.tokens,
                          snap.at_step if snap else None)
    job.store_prefix(step, st.log, job.model, result, pre_anneal=snap.weights if snap else None)


def _export(job: Job, log, model, rkey: str) -> None:
    from cpt.model.hf import export_dir, export_model

    path = export_model(model, job.data.tokenizer, export_dir(job.cfg.paths.root, rkey))
    log.set_tags({"cpt.export_dir": str(path)})
    job.say(f"exported the final model (Hugging Face format) to {path}")
    uri = log.log_pipeline(path, EXAMPLE_TEXT)
    job.say(f"logged it as an MLflow model: mlflow.transformers.load_model(\"{uri}\")")


def _finished(job: Job, plan: Walk, rkey: str) -> RunResult | None:
    """The result of a FINISHED run with this identity (a re-run sweep skips it), unless force."""
    from cpt.train.resume import checkpoints_for, tidy_leftover

    done = None if job.cfg.force else job.tracker.finished_run(rkey)
    if done is None:
        return None
    metrics = dict(done.data.metrics)
    lacking = _lacks_scores(job, metrics)
    job.say(f"run {rkey[:12]} finished already as MLflow run {done.info.run_id}: " +
            ("scoring the harness tasks it lacks on its kept final weights" if lacking
             else "skipped (force=true trains it again)"))
    job.tracker.join_sweep(done.info.run_id, job.ctx.sweep_id)  # it belongs to this sweep's table too, and keeps its parent
    tidy_leftover(checkpoints_for(job.cfg, f"run-{rkey}"), job.tracker)  # a kill after FINISHED, before deleting them
    if lacking:  # task scores belong to a finished run, not to its identity: added to the same run
        from cpt.harness.existing import score_run

        metrics.update(score_run(done.info.run_id, job.cfg, job.tracker, job.say))
    s0 = job.cache.cache.get(plan.cached[0].key)
    # Every cached stage the run walks was there: all hits.
    return RunResult(metrics, done.info.run_id, [True] * len(plan.cached), s0.result if s0 else {}, skipped=True)


def _lacks_scores(job: Job, metrics: dict) -> bool:
    """Does a finished run lack a score of a task in harness.tasks?"""
    if not job.cfg.harness.tasks:
        return False
    from cpt.harness.metrics import mlflow_name
    from cpt.harness.stages import harness_tasks

    return any(not any(k.startswith(f"harness/{mlflow_name(t.name)}/") for k in metrics)
               for t in harness_tasks(job.cfg))


def _ensure(job: Job, step: Step, prev, offset: int):
    """(entry, cache hit) of the stage that follows the entry `prev` (None: from scratch): from
    the cache, or trained (or, for model.init, loaded) now, once, and stored. A hit evaluates
    the datasets it lacks."""
    from cpt.plan.recipes import stage_label
    from cpt.run.pretrained import load_prefix
    from cpt.train.resume import checkpoints_for, tidy_leftover

    cache, stage = job.cache, step.stage
    with cache.lock(step.key):
        cached = cache.get(step.key)
        hit = cached is not None
        if not hit and stage.init:  # model.init: the pretrained checkpoint is stage 0
            cached = load_prefix(job, step, job.weights(None))
        elif not hit:
            cached = _train_prefix(job, step, prev, offset)
        else:
            job.say(f"stage {stage.index} ({stage_label(job.cfg, stage)}): cached prefix {step.key[:12]} "
                    f"(trained by MLflow run {cached.result['run_id']}), reused")
            if cache.dist.is_zero:
                tidy_leftover(checkpoints_for(job.cfg, f"prefix-{step.key}"), job.tracker)
                job.tracker.join_sweep(cached.result["run_id"], job.ctx.sweep_id)
        missing = [n for n in job.names if n not in cached.result["val"]]
        if missing:  # a new chain evaluates datasets the entry has not seen, once
            cache.add_val(cached, job.evaluate(job.weights(cached), missing))
    return cached, hit


def _train_prefix(job: Job, step: Step, prev, offset: int):
    """Train a cached stage from the weights of entry `prev` (None: from random weights), store it."""
    from cpt.plan.recipes import stage_label
    from cpt.plan.schedules import anneal_start_step
    from cpt.train.callbacks import PreAnneal
    from cpt.train.resume import StageSpec, train_resumable

    stage, key, cfg = step.stage, step.key, job.cfg
    model = job.weights(prev, stage)
    name = stage_label(cfg, stage)
    job.say(f"stage {stage.index} ({name}): training prefix {key[:12]} — {stage.steps} steps, {stage.tokens:,} tokens")
    anneal = anneal_start_step(stage.schedule, stage.steps)
    snap = PreAnneal(anneal) if anneal is not None else None
    init = str(start_path(prev, stage)) if prev is not None else ""
    parent = prev.result.get("run_id", "") if prev is not None else ""  # the chain, for reports
    tags = job.prefix_tags(step, **{"cpt.init_weights": init, "cpt.prefix_run_id": parent})
    spec = StageSpec(stage, f"prefix-{key}", f"prefix-{stage.index}-{key[:8]}", tags, offset,
                     f"stage {stage.index} {name}")
    st = train_resumable(job, spec, model, callbacks=[snap] if snap else [])
    with run_status(st.log):
        result = stage_result(stage, st.metrics, offset, cfg.batch.tokens, anneal)
        entry = job.store_prefix(step, st.log, model, result, pre_anneal=snap.weights if snap else None)
    if job.cache.dist.is_zero:
        st.checkpoints.clear()  # the cache entry replaces them
    return entry
