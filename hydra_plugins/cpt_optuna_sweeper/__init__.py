"""Hydra sweeper plugin backed by Optuna >= 4 (``hydra/sweeper=optuna``).

The official ``hydra-optuna-sweeper`` pins ``optuna<3``, which conflicts with this
project's ``optuna>=4``; this package offers the same configuration surface on top
of the current ask/tell API.

Layout, one responsibility per module:

* ``config``       -- dataclass configs registered in Hydra's ConfigStore.
* ``search_space`` -- override-grammar strings <-> Optuna distributions / overrides.
* ``study``        -- building the sampler and creating or resuming the study.
* ``results``      -- per-trial log lines and ``optimization_results.yaml``.
* ``sweeper``      -- the ``Sweeper`` plugin: the ask / launch / tell loop.

Hydra discovers the plugin by scanning the ``hydra_plugins`` namespace package,
which is why ``hydra_plugins/`` itself has no ``__init__.py``.
"""

from cpt.sweep.env_names import STUDY_ENV_VAR, TRIAL_ENV_VAR  # the job (cpt.sweep.optuna_trial) reads the same names

__all__ = ["STUDY_ENV_VAR", "TRIAL_ENV_VAR"]
