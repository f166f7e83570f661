"""The environment variables a sweeper sets for its jobs (hydra.job.env_set), each named once.

The sweepers (hydra_plugins/) write them and the job (cpt/sweep/job_tags.py, optuna_trial.py)
reads them: the environment reaches a job in another process or on another machine, and the
job need not import Optuna or the plugins. This module imports only the standard library, so
either side may. `env_set` is the one way a sweeper writes a job's variable.
"""

import re

STUDY_ENV_VAR = "CPT_OPTUNA_STUDY"  # an Optuna trial's study name (hydra/sweeper=optuna)
TRIAL_ENV_VAR = "CPT_OPTUNA_TRIAL"  # its trial number
BASELINE_ENV_VAR = "CPT_BASELINE"  # a reference run's label, e.g. recipe=union (hydra/sweeper=grid_with_baselines)


def env_set(var: str, value: str) -> str:
    """The override that sets `var` to `value` in a job's environment."""
    return f"++hydra.job.env_set.{var}={quoted(value)}"


def quoted(text: str) -> str:
    """``text`` as a single-quoted override value that Hydra parses back unchanged.

    Hydra only unescapes backslashes that precede a quote or end the string, so
    only those are doubled.
    """
    escaped = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{escaped}'"
