"""Which Optuna trial is this job? (set by ``hydra/sweeper=optuna``).

The sweeper (``hydra_plugins.cpt_optuna_sweeper``) launches every trial with
``hydra.job.env_set`` entries naming the study and the trial number; reading them
from the environment keeps Optuna out of the job's imports and also works with
launchers that run the job in another process or on another machine.
"""

from __future__ import annotations

import os

from cpt.sweep.env_names import STUDY_ENV_VAR, TRIAL_ENV_VAR


def current_trial() -> tuple[str, int] | None:
    """``(study_name, trial_number)`` inside an Optuna-swept job, else ``None``."""
    study = os.environ.get(STUDY_ENV_VAR)
    trial = os.environ.get(TRIAL_ENV_VAR)
    if not study or trial is None:
        return None
    try:
        return study, int(trial)
    except ValueError:
        # A stray, hand-set variable is not a trial; better no tag than a crash.
        return None
