"""Stage 0 from a pretrained checkpoint (`model.init`): load, evaluate every dataset, cache.

The loaded model is the chain's stage-0 prefix like a trained one: its evaluation is the
reference of `forgetting`, it is logged as an MLflow run tagged cpt.kind=prefix (with cpt.init),
and later runs of the same chain find it in the prefix cache. It is stored the way a trained
prefix is (Job.store_prefix: the rank-aware cache, the same result fields) and evaluated where
a cache hit is (Job.evaluate).
"""

from __future__ import annotations

from cpt import faults
from cpt.run.job import Job
from cpt.plan.walk import Step
from cpt.store.run_status import run_status


def load_prefix(job: Job, step: Step, model):
    """Load model.init into `model`, evaluate it on every dataset, and cache it as prefix `step`."""
    from cpt.model.hf import load_init_weights

    stage, key = step.stage, step.key
    job.say(f"stage {stage.index} ({job.names[stage.dataset]}): loading pretrained model.init={stage.init} "
            f"(prefix {key[:12]})")
    model.load_state_dict(load_init_weights(job.cfg.model))
    # We hold this prefix's lock: a RUNNING run of it is what a killed process left behind.
    job.tracker.end_stale(f"tags.`cpt.kind` = 'prefix' and tags.`cpt.prefix_key` = '{key}'")
    log = job.tracker.start_run(f"prefix-{stage.index}-{key[:8]}", job.params,
                                job.prefix_tags(step, **{"cpt.init": stage.init}))
    with run_status(log):
        faults.reached("init")
        val = job.evaluate(model, job.names)
        log.log_metrics({f"val/{n}/loss": v for n, v in val.items()}, 0)
        result = {"val": val, "val_at_start": val, "end_tokens": 0, "tokens": 0, "init": stage.init}
        entry = job.store_prefix(step, log, model, result)
    return entry
