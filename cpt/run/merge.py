"""recipe=merge: points on the forgetting/adaptation trade-off that cost no training.

- α points (merge.alphas): θ(α) = (1 − α)·θ_start + α·θ_end between the weights the chain's last
  stage started from (an infinite schedule: the pre-anneal weights it continued from) and the
  final weights of the `recipe=cpt` run of the same config, which a finished run keeps in the
  prefix cache (cpt/run/experiment.py `_keep_final`). Absent, that run is trained once first,
  as `python run.py recipe=cpt ...` would (its own MLflow run). Forgetting and adaptation use
  the cpt run's references, so α = 1 is that run's numbers and α = 0 its starting weights'.
- a soup (merge.runs, merge.weights): the average of finished cpt runs' final weights (arXiv
  2203.05482) that share the chain's stage 0 and shapes, measured like a baseline against that
  stage-0 model (cpt/plan/metrics.py).

Every point is one MLflow run (`cpt.recipe=merge`, `cpt.merge.alpha` or `cpt.merge.runs`) with
its own run key; a finished point is skipped on a re-run. Nothing here imports cpt.run.experiment:
the run that trains the cpt chain is handed in (`train_cpt`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from cpt.config.schema import Merge, Recipe
from cpt.errors import UserError
from cpt.plan.identity import run_key
from cpt.plan.metrics import final_metrics
from cpt.run.job import Job, start_path
from cpt.store.run_status import run_status


@dataclasses.dataclass
class Point:
    """One merged model to evaluate and log."""

    identity: dict  # its merge point in the run key ({"alpha": α} or the soup's runs and weights)
    label: str  # in its MLflow run's name and the printed line
    weights: Callable[[], dict]  # builds its state dict (only for a point not finished already)
    tags: dict
    params: dict


def run_merge(job: Job, plan, stages, train_cpt) -> tuple:
    """Evaluate and log every point; returns the fields of experiment.RunResult (metrics, run id,
    prefix hits, stage-0 result, skipped), the last point's metrics and run."""
    names = job.names
    if job.cfg.merge.runs:
        entries, hits = [_stage0(job, plan)], [True] * len(plan.cached)
        points, refs, last_at_start = [_soup(job, plan, entries[0])], *_baseline_refs(job, entries[0])
    else:
        entries, hits = _chain_entries(job, plan, train_cpt)
        refs = {names[s.stage.dataset]: e.result["val"][names[s.stage.dataset]]
                for s, e in zip(plan.cached, entries) if s.is_reference}
        last_at_start = entries[-1].result["val_at_start"][names[-1]]
        points = _alpha_points(job, stages, entries)
    for point in points:
        metrics, run_id, skipped = _evaluate_point(job, stages, point, refs, last_at_start)
    return metrics, run_id, hits, entries[0].result, skipped


def cpt_config(cfg, ctx):
    """The `recipe=cpt` run a merge reads, as `python run.py recipe=cpt <the same overrides>`
    would run it: its config, and its context (params, config.yaml, overrides) with the merge
    keys at their defaults."""
    import yaml

    from cpt.store.tracking import flatten

    defaults = flatten({"merge": dataclasses.asdict(Merge())})
    params = {**{k: v for k, v in ctx.params.items() if not k.startswith("merge.")}, **defaults,
              "recipe.name": "cpt"}
    resolved = yaml.safe_load(ctx.resolved_yaml) if ctx.resolved_yaml else None
    if resolved:
        resolved.update(recipe={"name": "cpt"}, merge=dataclasses.asdict(Merge()))
    overrides = [o for o in ctx.overrides if not o.lstrip("+~").startswith(("recipe=", "merge."))]
    return (dataclasses.replace(cfg, recipe=Recipe("cpt"), merge=Merge()),
            dataclasses.replace(ctx, params=params, choices={**ctx.choices, "recipe": "cpt"}, overrides=overrides,
                                resolved_yaml=yaml.safe_dump(resolved, sort_keys=False) if resolved else ""))


def _chain_entries(job: Job, plan, train_cpt):
    """The cache entries of every stage of the cpt chain (the last: its final weights), and
    whether they were all there; else the cpt run is trained now (again, with force, if it
    finished before its final weights were kept or they were removed)."""
    def found():
        return [job.cache.get(step.key) for step in plan.cached]

    entries = found()
    if all(entries):
        return entries, [True] * len(entries)
    cfg, ctx = cpt_config(job.cfg, job.ctx)
    job.say("merge: the cpt run it merges has no cached final weights: training it")
    if train_cpt(cfg, ctx).skipped:
        train_cpt(dataclasses.replace(cfg, force=True), ctx)
    entries = found()
    if not all(entries):
        raise RuntimeError("the cpt run finished but its cache entries are missing")
    return entries, [False] * len(entries)


def _alpha_points(job: Job, stages, entries) -> list[Point]:
    from cpt.model.merge import interpolate

    end, before = entries[-1], entries[-2]
    cache = {}

    def weights(alpha):
        if not cache:  # read once, only if some point is not finished already
            cache.update(start=before.load_weights(start_path(before, stages[-1])), end=end.load_weights())
        return interpolate(cache["start"], cache["end"], alpha)

    of = {"cpt.merge.of": end.result["run_id"], "cpt.prefix_key": end.key, "cpt.reference_key": entries[0].key}
    return [Point({"alpha": a}, f"merge.alpha={a:g}", lambda a=a: weights(a),
                  {**of, "cpt.merge.alpha": a}, {"merge.alpha": a}) for a in job.cfg.merge.alphas]


def _evaluate_point(job: Job, stages, point: Point, refs: dict, last_at_start: float) -> tuple:
    """(metrics, run id, skipped) of one point: evaluated on every dataset and logged, or the
    finished run of its identity."""
    from cpt.store.tracking import IDENTITY_TAG

    cfg, names = job.cfg, job.names
    key = run_key(cfg, stages, point.identity)
    with job.cache.lock(f"run-{key}"):
        done = None if cfg.force else job.tracker.finished_run(key)
        if done is not None:
            job.say(f"merge {point.label}: finished already as MLflow run {done.info.run_id}: skipped")
            job.tracker.join_sweep(done.info.run_id, job.ctx.sweep_id)
            return dict(done.data.metrics), done.info.run_id, True
        model = job.weights(None) if job.model is None else job.model
        model.load_state_dict(point.weights())
        metrics = final_metrics(names, job.evaluate(model, names), refs, last_at_start)
        tokens = sum(s.tokens for s in stages)
        metrics.update({"compute/tokens": 0, "compute/flops": 0, "compute/tokens_with_prefix": tokens})
        tags = {**job.tags, **point.tags, "cpt.kind": "run", "cpt.stage": stages[-1].index, "cpt.run_key": key,
                "mlflow.note.content": job.ctx.description}
        log = job.tracker.start_run(f"{job.ctx.run_name} {point.label}", {**job.params, **point.params}, tags)
        with run_status(log):
            if job.ctx.resolved_yaml:
                log.log_text(job.ctx.resolved_yaml, "config.yaml")
            log.log_metrics(metrics, tokens)
            log.set_tags({IDENTITY_TAG: key})
    job.say(f"merge {point.label}: " + ", ".join(f"{n} {metrics[f'final/{n}/loss']:.4f}" for n in names)
            + f", forgetting {metrics.get('forgetting', float('nan')):+.4f}, adaptation {metrics['adaptation']:+.4f}")
    return metrics, log.run_id, False


def _stage0(job: Job, plan):
    """The chain's cached stage-0 model, with every dataset of the chain evaluated."""
    entry = job.cache.get(plan.cached[0].key)
    if entry is None:
        raise UserError(f"merge.runs={job.cfg.merge.runs}: the chain's stage 0 ({plan.cached[0].key[:12]}) is not "
                        "cached; allowed: runs of this config's chain (its stage 0 is cached by every such run)")
    missing = [n for n in job.names if n not in entry.result["val"]]
    if missing:
        job.cache.add_val(entry, job.evaluate(job.weights(entry), missing))
    return entry


def _baseline_refs(job: Job, stage0) -> tuple[dict, float]:
    """A soup's references, a baseline's (cpt/plan/metrics.py): the chain's stage-0 model."""
    names = job.names
    return {names[0]: stage0.result["val"][names[0]]}, stage0.result["val"][names[-1]]


def _soup(job: Job, plan, stage0) -> Point:
    """The average of the final weights of merge.runs (run ids, or sweep ids: their cpt runs),
    refused in one line unless every run shares the chain's stage 0 and shapes."""
    from cpt.model.merge import average
    from cpt.store.stage_checkpoints import load_state_dict_checked

    records = resolve_runs(job.tracker, job.cfg.merge.runs)
    check_soup(records, stage0.key, job.cfg.merge.weights)
    finals = {e.result.get("run_id"): e for e in job.cache.cache.entries()}
    ids = [r["run_id"] for r in records]
    for rid in ids:
        _check(rid in finals, f"run {rid} has no cached final weights (it finished before cpt kept them, "
               f"or `cpt cache rm` removed them); allowed: runs whose final weights are in {job.cache.cache.root}")
    weights = job.cfg.merge.weights or [1.0] * len(ids)
    weights = [w / sum(weights) for w in weights]

    def soup():
        model = job.weights(None) if job.model is None else job.model
        states = []
        for rid in ids:  # each run's weights must fit this chain's model (one line if not)
            states.append(finals[rid].load_weights())
            load_state_dict_checked(model, states[-1], finals[rid].weights)
        return average(states, weights)

    return Point({"runs": ids, "weights": weights}, f"soup of {len(ids)}", soup,
                 {"cpt.merge.runs": ",".join(ids), "cpt.reference_key": stage0.key}, {})


def resolve_runs(tracker, ids: list[str]) -> list[dict]:
    """merge.runs → MLflow records: a run id is that run; a sweep id its finished cpt runs."""
    out = []
    for i in ids:
        record = tracker.record(i) if len(i) == 32 else None
        found = [record] if record else [r for r in tracker.sweep_records(i)
                                         if r["status"] == "FINISHED" and r["tags"].get("cpt.recipe") == "cpt"]
        _check(bool(found), f"{i} is neither an MLflow run nor a sweep with finished recipe=cpt runs in "
               f"{getattr(tracker, 'uri', 'this store')}")
        out += found
    return out


def check_soup(records: list[dict], stage0_key: str, weights: list[float]) -> None:
    """One line, exit 2, for a run a soup cannot hold: not a finished cpt run, or another stage 0."""
    for r in records:
        tags, rid = r["tags"], r["run_id"]
        _check(r["status"] == "FINISHED" and tags.get("cpt.recipe") == "cpt" and tags.get("cpt.kind") == "run",
               f"run {rid} is not a finished recipe=cpt run (status {r['status']}, recipe {tags.get('cpt.recipe')})")
        _check(tags.get("cpt.reference_key") == stage0_key,
               f"run {rid} does not share this chain's stage 0 (its stage 0 is "
               f"{tags.get('cpt.reference_key', '?')[:12]}, this chain's {stage0_key[:12]}); allowed: runs of the "
               "same model, tokenizer, D0 and pretrain.* as this config")
    _check(len({r["run_id"] for r in records}) == len(records), "a run is listed twice")
    _check(not weights or len(weights) == len(records),
           f"merge.weights has {len(weights)} weights for {len(records)} runs; allowed: one per run, or []")


def _check(ok: bool, why: str) -> None:
    if not ok:
        raise UserError(f"merge.runs: {why}")
