"""The environment variables a sweeper sets for its jobs (hydra.job.env_set), each named once.

The sweepers (hydra_plugins/) write them and the job (cpt/sweep/job_tags.py, optuna_trial.py)
reads them: the environment reaches a job in another process or on another machine, and the
job need not import Optuna or the plugins. This module imports nothing, so either side may.
"""

STUDY_ENV_VAR = "CPT_OPTUNA_STUDY"  # an Optuna trial's study name (hydra/sweeper=optuna)
TRIAL_ENV_VAR = "CPT_OPTUNA_TRIAL"  # its trial number
BASELINE_ENV_VAR = "CPT_BASELINE"  # a reference run's label, e.g. recipe=union (hydra/sweeper=grid_with_baselines)
