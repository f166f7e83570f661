"""The ``Sweeper`` plugin: ask Optuna for trials, launch them, tell the results."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from cpt.cli.sweep_check import check_sweeper_jobs, one_value_each
from cpt.errors import UserError, report
from cpt.sweep.env_names import STUDY_ENV_VAR, TRIAL_ENV_VAR, env_set

from . import config as _config  # noqa: F401  (registers the configs with Hydra)
from .results import log_trial, write_results
from .search_space import SearchSpace, build_search_space, describe
from .study import check_compatible, grid_exhausted, make_sampler, open_study, parse_directions, tell

log = logging.getLogger(__name__)


class TaskReturnError(TypeError):
    """The task function's return value does not fit ``hydra.sweeper.direction``."""


class OptunaSweeper(Sweeper):
    """Optuna-driven sweeper; see ``config.OptunaSweeperConf`` for the options."""

    def __init__(
        self,
        sampler: DictConfig,
        direction: Any,
        storage: Optional[str],
        study_name: Optional[str],
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Optional[DictConfig],
    ) -> None:
        # Validate here so a bad config fails before any job is launched.
        self.directions = parse_directions(direction)
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_trials ({n_trials}) and n_jobs ({n_jobs}) must be >= 1")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {max_failure_rate}")
        self.sampler_config = sampler
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else params

        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Optional[Launcher] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.hydra_context is not None and self.config is not None and self.launcher is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = build_search_space(self.params, arguments, parser)
        axes = [[space.overrides({k: v})[-1] for v in values] for k, values in space.extremes().items()]
        check_sweeper_jobs(one_value_each(list(space.fixed.values()), axes), self.hydra_context.config_loader,
                           self.config)
        try:
            study = open_study(
                study_name=self.study_name,
                storage=self.storage,
                sampler=make_sampler(self.sampler_config, space),
                directions=self.directions,
            )
        except UserError as e:  # Hydra would print it with a traceback: one line, as run.py does
            raise SystemExit(report(e)) from None
        check_compatible(study, space.distributions)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._log_start(study, space)
        try:
            return self._run_trials(study, space)
        finally:
            # Also on abort: the trials that did finish are still worth a summary.
            write_results(study, sweep_dir)

    def _run_trials(self, study: optuna.Study, space: SearchSpace) -> List[Sequence[JobReturn]]:
        all_returns: List[Sequence[JobReturn]] = []
        launched = failed = 0
        # Number job folders like the study's trials, so that a resumed study writes
        # new folders instead of overwriting those of the previous run.
        job_idx = len(study.get_trials(deepcopy=False))
        while launched < self.n_trials:
            if grid_exhausted(study):
                log.info(f"Grid exhausted after {launched} new trial(s); stopping early")
                break
            size = min(self.n_jobs, self.n_trials - launched)
            returns, finished = self._run_batch(study, space, size, job_idx)
            all_returns.append(returns)
            launched += size
            job_idx += size
            failed += sum(t.state == TrialState.FAIL for t in finished)
            if failed > self.max_failure_rate * launched:
                raise RuntimeError(
                    f"{failed} of {launched} trials failed, more than "
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate}; aborting the sweep"
                )
        return all_returns

    def _run_batch(
        self, study: optuna.Study, space: SearchSpace, size: int, job_idx: int
    ) -> Tuple[Sequence[JobReturn], List[FrozenTrial]]:
        """Ask ``size`` trials, launch them as one batch, tell Optuna their results."""
        assert self.launcher is not None
        trials: List[Trial] = []
        finished: List[FrozenTrial] = []
        try:
            for _ in range(size):
                trials.append(study.ask(space.distributions))
            batch = [space.overrides(t.params) + self._env_overrides(study, t) for t in trials]
            self.validate_batch_is_legal(batch)
            returns = self.launcher.launch(batch, initial_job_idx=job_idx)
            errors = []
            for trial, ret in zip(trials, returns):
                try:
                    finished.append(self._tell(study, trial, ret))
                except TaskReturnError as e:
                    errors.append(e)
                    finished.append(tell(study, trial, state=TrialState.FAIL))
                log_trial(finished[-1], _output_dir(ret))
            if errors:
                # Every trial runs the same code, so a bad return value is systematic.
                raise errors[0]
            return returns, finished
        finally:
            # Never leave trials RUNNING in a persistent study: samplers and the
            # dashboard would treat them as still in progress forever.
            for trial in trials[len(finished) :]:
                tell(study, trial, state=TrialState.FAIL)

    def _tell(self, study: optuna.Study, trial: Trial, ret: JobReturn) -> FrozenTrial:
        try:
            value = ret.return_value
        except Exception as e:  # the job raised: that trial fails, the sweep goes on
            log.warning(f"Trial {trial.number} raised {type(e).__name__}: {e}")
            return tell(study, trial, state=TrialState.FAIL)
        values = self._values(value)
        if any(math.isnan(v) for v in values):
            log.warning(f"Trial {trial.number} returned NaN ({value!r}); marked as failed")
            return tell(study, trial, state=TrialState.FAIL)
        return tell(study, trial, values)

    def _values(self, value: Any) -> List[float]:
        items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
        try:
            values = [float(v) for v in items]
        except (TypeError, ValueError):
            raise TaskReturnError(
                "with hydra/sweeper=optuna the task function must return a float, or a "
                f"list/tuple of floats for multi-objective studies; it returned {value!r}"
            ) from None
        if len(values) != len(self.directions):
            raise TaskReturnError(
                f"the task function returned {len(values)} value(s) ({value!r}) but "
                f"hydra.sweeper.direction lists {len(self.directions)}: {self.directions}"
            )
        return values

    @staticmethod
    def _env_overrides(study: optuna.Study, trial: Trial) -> List[str]:
        # Lets the job tag its own logs / checkpoints with the trial (cpt.sweep.optuna_trial).
        return [
            env_set(STUDY_ENV_VAR, study.study_name),
            env_set(TRIAL_ENV_VAR, str(trial.number)),
        ]

    def _log_start(self, study: optuna.Study, space: SearchSpace) -> None:
        previous = len(study.get_trials(deepcopy=False))
        log.info(
            f"Optuna study {study.study_name!r} ({self.storage or 'in memory'}), "
            f"directions={self.directions}, sampler={type(study.sampler).__name__}, "
            f"{self.n_trials} trial(s) in batches of {self.n_jobs}"
            + (f", resuming after {previous} stored trial(s)" if previous else "")
        )
        if not space.distributions:
            log.warning("No sweep in hydra.sweeper.params or on the command line: every trial is identical")
        for line in describe(space.distributions):
            log.info(line)
        for line in space.fixed.values():
            log.info(f"  fixed: {line}")


def _output_dir(ret: JobReturn) -> Optional[str]:
    # working_dir is the launch folder when hydra.job.chdir is off; the job's own
    # output folder is what a reader wants to open.
    if ret.hydra_cfg is not None:
        return OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir", default=ret.working_dir)
    return ret.working_dir
