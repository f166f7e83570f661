"""One run: plan → data → for each stage: cached or trained → final metrics → MLflow.

This is what the Hydra task function calls; `run` reads top to bottom like the papers' recipe.
Which stages a recipe walks, which one is the run's own and which are the references of
`forgetting` is decided once, in cpt/plan/walk.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpt.config.schema import RunConfig
from cpt.plan.identity import run_key
from cpt.plan.metrics import final_metrics
from cpt.plan.stages import build_plan
from cpt.plan.walk import Step, Walk, walk
from cpt.run.job import Job, start_path
from cpt.store.prefix_cache import PrefixCache
from cpt.store.run_status import run_status


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
    """`dist`: this process's rank of the job (cpt/dist/ranks.py). Rank 0 alone logs, writes the
    cache and checkpoints, and decides what is cached or finished; the other ranks follow
    (cpt/dist/rank_cache.py)."""
    from cpt.data.prepare import prepare
    from cpt.dist.rank_cache import RankCache
    from cpt.dist.ranks import SINGLE
    from cpt.model.hf import check_init
    from cpt.store.tracking import NullTracker, Tracker

    check_init(cfg.model)  # a bad model.init fails before the data is prepared
    stages = build_plan(cfg)
    plan = walk(cfg, stages)
    dist = dist or SINGLE
    # first: a tracking server that does not answer stops us before any work
    tracker = Tracker(cfg.tracking) if dist.is_zero else NullTracker()
    job = Job(cfg, ctx, None, tracker, RankCache(PrefixCache(cfg.paths.root / "cache"), dist), say)
    rkey = run_key(cfg, stages)
    if (done := dist.broadcast(_finished(job, plan, rkey) if dist.is_zero else None)):
        return done
    job.data = dist.first(prepare, cfg)  # rank 0 builds the shards, the others open them
    job.tags, job.params = _job_tags(cfg, ctx), {**ctx.params, **ctx.choices}
    entries, hits, offset = _walk_cached(job, plan)
    with job.cache.lock(f"run-{rkey}"):  # one job trains a run; a duplicate waits, then finds it finished
        if (done := dist.broadcast(_finished(job, plan, rkey) if dist.is_zero else None)):
            return done
        log, metrics = _final_stage(job, plan, stages, entries, hits, offset, rkey)
    return RunResult(metrics, log.run_id, hits, entries[0].result)


def _job_tags(cfg: RunConfig, ctx: RunContext) -> dict:
    from cpt.store.tracking import environment_tags

    return {**environment_tags(), "cpt.sweep_id": ctx.sweep_id, "cpt.recipe": cfg.recipe.name,
            **{f"cpt.choice.{k}": v for k, v in ctx.choices.items()}, **ctx.extra_tags}


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
                "cpt.prefix_cached": all(hits), "cpt.reference_key": entries[0].key}
    st = None
    if own:  # resumes from its own checkpoint, in its own MLflow run, if a crash cut it short
        st = _train_own(job, own, entry, offset, run_tags, rkey)
        log, final, last_at_start, end = st.log, st.metrics.evals[own.steps], st.metrics.evals[0][names[-1]], \
            offset + own.tokens
    else:  # nothing to train: the final losses are the cached model's
        log = job.tracker.start_run(job.ctx.run_name, job.params, run_tags)
        final, last_at_start, end = entry.result["val"], entries[0].result["val"][names[-1]], offset
    with run_status(log):
        if job.ctx.resolved_yaml and not (st and st.reopened):
            log.log_text(job.ctx.resolved_yaml, "config.yaml")
        metrics = final_metrics(names, final, ref, last_at_start)
        metrics.update(_compute(job, plan, stages))
        log.log_metrics(metrics, end)
        if cfg.export and job.cache.dist.is_zero:
            _export(job, log, job.model if own else job.weights(entry), rkey)
        log.set_tags({IDENTITY_TAG: rkey})  # from now on a re-run of this identity is skipped
    if st and job.cache.dist.is_zero:
        st.checkpoints.clear()  # the run finished: its periodic checkpoints go
    return log, metrics


def _compute(job: Job, plan: Walk, stages) -> dict[str, float]:
    """Tokens into this run's model, and those of it that are this recipe's own (not a chain
    prefix shared with other runs): cpt its last stage, union/scratch their one stage."""
    from cpt.model.spec import flops_per_token

    with_prefix = sum(s.tokens for s in stages)
    own = with_prefix - sum(s.tokens for s in plan.shared)
    return {"compute/tokens_with_prefix": with_prefix, "compute/tokens": own,
            "compute/flops": own * flops_per_token(job.cfg.model, job.data.vocab_size)}


def _train_own(job: Job, own, entry, offset: int, run_tags: dict, rkey: str):
    from cpt.train.resume import StageSpec, train_resumable

    name = job.names[own.dataset]
    job.say(f"stage {own.index} ({name}): {own.steps} steps, {own.tokens:,} tokens")
    spec = StageSpec(own, f"run-{rkey}", job.ctx.run_name, run_tags, offset, f"stage {own.index} {name}")
    return train_resumable(job, spec, job.weights(entry, own))


def _export(job: Job, log, model, rkey: str) -> None:
    from cpt.model.hf import export_dir, export_model

    path = export_model(model, job.data.tokenizer, export_dir(job.cfg.paths.root, rkey))
    log.set_tags({"cpt.export_dir": str(path)})
    job.say(f"exported the final model (Hugging Face format) to {path}")


def _finished(job: Job, plan: Walk, rkey: str) -> RunResult | None:
    """The result of a FINISHED run with this identity (a re-run sweep skips it), unless force."""
    from cpt.train.resume import checkpoints_for, tidy_leftover

    done = None if job.cfg.force else job.tracker.finished_run(rkey)
    if done is None:
        return None
    job.say(f"run {rkey[:12]} finished already as MLflow run {done.info.run_id}: skipped "
            "(force=true trains it again)")
    if job.ctx.sweep_id:  # it belongs to this sweep's table too
        job.tracker.set_tags(done.info.run_id, {"cpt.sweep_id": job.ctx.sweep_id})
    tidy_leftover(checkpoints_for(job.cfg, f"run-{rkey}"), job.tracker)  # a kill after FINISHED, before deleting them
    s0 = job.cache.cache.get(plan.cached[0].key)
    # Every cached stage the run walks was there: all hits.
    return RunResult(dict(done.data.metrics), done.info.run_id, [True] * len(plan.cached),
                     s0.result if s0 else {}, skipped=True)


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
    evals = st.metrics.evals
    with run_status(st.log):
        result = {"val": evals[stage.steps], "val_at_start": evals[0], "end_tokens": offset + stage.tokens,
                  "tokens": stage.tokens}
        if snap:
            result.update(pre_anneal_step=anneal, pre_anneal_tokens=offset + anneal * cfg.batch.tokens,
                          val_pre_anneal=evals[anneal])
        entry = job.store_prefix(step, st.log, model, result, pre_anneal=snap.weights if snap else None)
    if job.cache.dist.is_zero:
        st.checkpoints.clear()  # the cache entry replaces them
    return entry
