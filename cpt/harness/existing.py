"""`cpt evaluate`: score a model that exists already (a run's final weights in the prefix cache,
or an exported Hugging Face directory) with the harness, without training; the scores go into
that MLflow run as the run itself would have logged them (cpt/harness/stages.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cpt.errors import UserError


def evaluate_existing(target: str, overrides: list[str], say=print) -> dict[str, float]:
    """`target`: an MLflow run id or an export directory; `overrides` set harness=... (and, for a
    run id, come after the run's own overrides, so its chain is the run's)."""
    from cpt.cli.compose import compose_run_config

    cfg = compose_run_config(overrides)
    if not cfg.harness.tasks:
        raise UserError("harness.tasks=[]: nothing to evaluate; allowed: harness=synthetic|paper-en|paper-de "
                        "or harness.tasks=[...]")
    from cpt.store.tracking import Tracker, store_exists

    if not store_exists(cfg.tracking):
        raise UserError(f"tracking.uri={cfg.tracking.uri}: no MLflow store there; give the run's own "
                        "paths.output_dir=... (or tracking.uri=...)")
    tracker = Tracker(cfg.tracking)
    if Path(target).is_dir():
        return _export(Path(target), cfg, tracker, say)
    record = tracker.record(target)
    if record is None:
        raise UserError(f"{target}: neither a directory nor an MLflow run of {cfg.tracking.uri}; allowed: a run "
                        "id (the run's summary prints it) or an export directory (export=true)")
    # A key given here replaces the run's own; so does any harness setting (the run's harness.limit
    # must not outlive harness=... given here).
    mine = {o.lstrip("+~").split("=")[0].split(".")[0] for o in overrides}
    own = [o for o in record["tags"].get("cpt.overrides", "").split(" ")
           if o and o.lstrip("+~").split("=")[0].split(".")[0] not in mine]
    return score_run(target, compose_run_config(own + overrides), tracker, say)


def _job(cfg, tracker, data, say):
    from cpt.dist.rank_cache import RankCache
    from cpt.harness.stages import harness_tasks
    from cpt.run.job import Job
    from cpt.store.prefix_cache import PrefixCache

    job = Job(cfg, None, data, tracker, RankCache(PrefixCache(cfg.paths.root / "cache")), say)
    job.tasks = harness_tasks(cfg)
    return job


def score_run(run_id: str, cfg, tracker, say) -> dict[str, float]:
    """The run's final weights (the cache entry of its whole chain) and the model its last stage
    started from (the reference of harness_forgetting), each scored once and kept in its entry."""
    from cpt.data.prepare import prepare
    from cpt.harness.stages import entry_scores, keep, score_model
    from cpt.plan.identity import prefix_key
    from cpt.plan.stages import build_plan
    from cpt.plan.walk import walk

    stages = build_plan(cfg)
    plan = walk(cfg, stages)
    job = _job(cfg, tracker, prepare(cfg), say)
    final_key = prefix_key(cfg, stages, len(stages) - 1) if plan.own else plan.cached[-1].key
    models = {}
    for label, key in (("reference", plan.cached[-1 if plan.own else 0].key), ("final", final_key)):
        entry = job.cache.get(key)
        if entry is None:
            raise UserError(f"{run_id}: the {label} weights (cache entry {key[:12]}) are not in "
                            f"{cfg.paths.root / 'cache'} (cpt cache list); evaluate its export directory instead")
        scores = entry_scores(job, entry)
        if len(scores) < len(job.tasks):
            scores = score_model(job, job.weights(entry), f"{label} model")
            keep(job, entry, scores)
        models[label] = (scores, entry.result.get("end_tokens", 0))
    return _log(job, tracker, run_id, models)


def _export(path: Path, cfg, tracker, say) -> dict[str, float]:
    """An export directory: scored as is; logged to the run that exported it, if this store has it."""
    from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from cpt.harness.stages import score_model

    try:
        model = GPTNeoXForCausalLM.from_pretrained(path)
        tok = PreTrainedTokenizerFast.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a Hugging Face model directory of a GPT-NeoX with its tokenizer "
                        f"({type(e).__name__}); allowed: an export directory (export=true)") from None
    job = _job(cfg, tracker, SimpleNamespace(tokenizer=tok.backend_tokenizer), say)
    scores = score_model(job, model, "exported model")
    runs = tracker.records(f"tags.`cpt.export_dir` = '{path}'")
    if not runs:
        say(f"no MLflow run in {cfg.tracking.uri} exported {path}: scores printed, not logged")
        from cpt.harness.metrics import stage_metrics

        return stage_metrics(scores)
    return _log(job, tracker, runs[-1]["run_id"], {"final": (scores, None)})


def _log(job, tracker, run_id: str, models: dict) -> dict[str, float]:
    """harness/* of each model at its token count (the final one at the run's last step) and the
    final/harness_* metrics, into the run."""
    from cpt.harness.metrics import final_metrics, stage_metrics
    from cpt.store.tracking import RunLog

    last = [s for s, _ in tracker.history(run_id, "final/avg_loss")] or [0]
    log = RunLog(tracker.client, run_id)
    final = models["final"][0]
    if "reference" in models:
        log.log_metrics(stage_metrics(models["reference"][0]), models["reference"][1])
    reference = models.get("reference", ({}, 0))[0]
    out = {**stage_metrics(final), **final_metrics(final, reference, {t.name: t.dataset for t in job.tasks},
                                                   len(job.names) - 1)}
    log.log_metrics(out, last[-1])
    log.flush()
    job.say(f"logged {len(out)} harness metrics to MLflow run {run_id}")
    return out
