"""The run's side of the harness: which models are scored, where scores are kept and logged.

`harness.at=stages` scores the model at the end of every cached stage and the final model;
`final` scores the final model and the two models it is compared with (the chain's stage 0 and
the model the last stage started from). A cache entry keeps its scores beside its losses
(result["harness"], keyed by task and settings), so a prefix shared by many runs is scored once,
and a hit that lacks a task scores it and stores it, as for a missing validation dataset. The
run's own MLflow run gets every scored model's harness/* at that model's token count, so the
history shows the scores across the chain. Scores are not part of a run's identity.
"""

from __future__ import annotations

import time


def harness_tasks(cfg) -> list:
    """The run's tasks, resolved (files, embedded tasks written, hub tasks reachable), or []."""
    if not cfg.harness.tasks:
        return []
    from cpt.harness.evaluator import resolve

    return resolve(cfg.harness, cfg.shift.datasets, cfg.paths.root)


def score_key(task, harness) -> str:
    """A task's scores under given settings: an entry keeps one set per key."""
    return f"{task.name}@{task.version}|fewshot={harness.num_fewshot}|limit={harness.limit}"


def score_model(job, model, label: str) -> dict[str, dict[str, float]]:
    """{task name: MLflow-named metrics} of `model` for every task of the job, timed and printed."""
    from cpt.harness.evaluator import hf_tokenizer, score
    from cpt.harness.metrics import metric_names, primary
    from cpt.run.job import eval_device

    start, training = time.time(), model.training
    model.to(eval_device(job.cfg)).eval()
    try:
        raw = score(model, hf_tokenizer(job.data.tokenizer, model.config.max_position_embeddings), job.tasks,
                    job.cfg.harness, job.cfg.paths.root)
    finally:
        model.to("cpu").train(training)
    out = {t: metric_names(r) for t, r in raw.items()}
    parts = []
    for t in job.tasks:
        m, p = out.get(t.name, {}), primary(out.get(t.name, {}))
        base = dict(t.baseline)
        extra = f" (unigram {base['unigram_acc']:.3f}, chance {base['chance']:.2f})" if "unigram_acc" in base else ""
        if p:
            parts.append(f"{t.name} {p} {m[p]:.3f} ± {m.get(p + '_stderr', float('nan')):.3f}{extra}")
    job.say(f"harness ({label}): {'; '.join(parts)} — scored in {time.time() - start:.1f}s")
    return out


def entry_scores(job, entry) -> dict[str, dict[str, float]]:
    """The entry's scores of the job's tasks, {} where it has none."""
    have = entry.result.get("harness", {})
    return {t.name: have[k] for t in job.tasks if (k := score_key(t, job.cfg.harness)) in have}


def score_entry(job, plan, i: int, entry) -> None:
    """Score cached step `i`'s model where `harness.at` asks for it and its entry lacks a task."""
    if not job.tasks or (job.cfg.harness.at == "final" and i not in (0, len(plan.cached) - 1)):
        return
    if len(entry_scores(job, entry)) == len(job.tasks):
        return
    scores = score_model(job, job.weights(entry), f"stage {entry.result.get('stage', i)} model")
    keep(job, entry, scores)
    if job.cache.dist.is_zero and hasattr(job.tracker, "client"):  # the prefix's own run shows them too
        from cpt.harness.metrics import stage_metrics
        from cpt.store.tracking import RunLog

        log = RunLog(job.tracker.client, entry.result["run_id"])
        log.log_metrics(stage_metrics(scores), entry.result.get("end_tokens", 0))
        log.flush()


def keep(job, entry, scores: dict) -> None:
    if entry is not None and scores:
        job.cache.add_scores(entry, {score_key(t, job.cfg.harness): scores[t.name] for t in job.tasks
                                     if t.name in scores})


def final_scores(job, plan, entries, own, end: int, log) -> tuple[dict, dict]:
    """(final/harness_* and harness_forgetting, the final model's scores); every scored model's
    harness/* logged into the run's own MLflow run at its token count."""
    if not job.tasks:
        return {}, {}
    from cpt.harness.metrics import final_metrics, stage_metrics

    for e in entries:
        if (s := entry_scores(job, e)):
            log.log_metrics(stage_metrics(s), e.result.get("end_tokens", 0))
    final = score_model(job, job.model, "final model") if own else entry_scores(job, entries[-1])
    reference = entry_scores(job, entries[-1] if own else entries[0])  # as `forgetting` (cpt/plan/walk.py)
    log.log_metrics(stage_metrics(final), end)
    names = job.names
    out = final_metrics(final, reference, {t.name: t.dataset for t in job.tasks}, len(names) - 1)
    job.say("harness: final avg " + ", ".join(f"{k.split('/')[-1]} {v:+.4f}" for k, v in out.items()))
    return out, final
