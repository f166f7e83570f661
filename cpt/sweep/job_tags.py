"""Tags a sweeper hands a job through its environment (hydra.job.env_set), for its MLflow run.

- an Optuna trial (``hydra/sweeper=optuna``): the study name and the trial number;
- a baseline job (``hydra/sweeper=grid_with_baselines``): its label, e.g. ``recipe=union``,
  which reports use to put it beside the grid as a reference row.
Reading the environment keeps the sweepers out of the job's imports and works with launchers
that run a job in another process or on another machine.
"""

from __future__ import annotations

import os

from cpt.sweep.env_names import BASELINE_ENV_VAR
from cpt.sweep.optuna_trial import current_trial


def job_tags() -> dict[str, str]:
    tags = {}
    trial = current_trial()
    if trial is not None:
        tags["cpt.optuna.study"], tags["cpt.optuna.trial"] = trial[0], str(trial[1])
    baseline = os.environ.get(BASELINE_ENV_VAR)
    if baseline:
        tags["cpt.baseline"] = baseline
    return tags
