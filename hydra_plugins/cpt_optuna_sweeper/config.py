"""Structured configs of the Optuna sweeper, registered in Hydra's ConfigStore.

Registered nodes:

* ``hydra/sweeper``: ``optuna``
* ``hydra/sweeper/sampler``: ``tpe`` (default), ``random``, ``cmaes``, ``nsga2``, ``grid``

The key names follow the official ``hydra-optuna-sweeper`` so that its configs and
documentation carry over; this module deliberately imports nothing from Optuna,
because Hydra imports it while scanning plugins at every application start.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConfig:
    """Fields every sampler accepts; ``_target_`` names the Optuna class."""

    _target_: str = MISSING
    # Seed of the sampler's RNG; None draws a fresh seed so runs differ.
    seed: Optional[int] = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    """Tree-structured Parzen Estimator, Optuna's default single-objective sampler."""

    _target_: str = "optuna.samplers.TPESampler"
    # Random trials before TPE starts modelling; lower it for short studies.
    n_startup_trials: int = 10
    # Candidates scored by expected improvement per suggestion.
    n_ei_candidates: int = 24
    # Model the parameters jointly (None: Optuna's default) -- helps correlated knobs.
    multivariate: Optional[bool] = None
    # With multivariate, split the space by which parameters each trial used.
    group: bool = False
    # Treat running trials as bad results so that the n_jobs trials of one batch,
    # asked before any is told, do not all land on the same point.
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """Independent uniform sampling: a baseline, and fine for tiny budgets."""

    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """CMA-ES for continuous spaces. Needs the extra package ``cmaes``."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    # Initial mean per parameter; None starts at the centre of the space.
    x0: Optional[Dict[str, Any]] = None
    # Initial step size; None lets Optuna derive it from the space's width.
    sigma0: Optional[float] = None
    # Independent (random) trials before CMA-ES takes over.
    n_startup_trials: int = 1
    # None (no restart), "ipop" or "bipop": restarts escape local optima.
    restart_strategy: Optional[str] = None
    # Population size per generation; None uses the CMA-ES default.
    popsize: Optional[int] = None
    # Diagonal covariance: cheaper for many parameters, ignores correlations.
    use_separable_cma: bool = False
    # CMA-ES with margin keeps integer / discrete parameters from collapsing.
    with_margin: bool = False


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """NSGA-II genetic algorithm, the usual choice for multi-objective studies."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    # Trials per generation; the first generation is random.
    population_size: int = 50
    # Per-parameter mutation probability; None means 1 / number of parameters.
    mutation_prob: Optional[float] = None
    # Probability that a child is produced by crossover rather than copied.
    crossover_prob: float = 0.9
    # Probability of swapping each parameter between the two parents.
    swapping_prob: float = 0.5


@dataclass
class GridSamplerConfig(SamplerConfig):
    """Exhaustive grid over a discrete space (choice / range / lists only)."""

    _target_: str = "optuna.samplers.GridSampler"
    # Parameter -> list of values. None builds the grid from the sweep's params,
    # which cannot contain interval(...) because a continuum has no grid.
    search_space: Optional[Dict[str, Any]] = None


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper`` when ``hydra/sweeper=optuna`` is selected."""

    _target_: str = "hydra_plugins.cpt_optuna_sweeper.sweeper.OptunaSweeper"
    # The sweeper builds the sampler itself (the grid sampler needs the search
    # space), so Hydra must hand the sampler config over un-instantiated.
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])

    # Chosen through the config group hydra/sweeper/sampler.
    sampler: SamplerConfig = MISSING
    # "minimize" or "maximize", or a list of them: one per value the task returns.
    direction: Any = "minimize"
    # Optuna storage URL (e.g. sqlite:///outputs/optuna.db). None keeps the study in
    # memory; with a URL, re-running the same command adds n_trials to the study.
    storage: Optional[str] = None
    # Name of the study in the storage; None lets Optuna generate a unique one,
    # which makes every run a new study even with a storage.
    study_name: Optional[str] = None
    # Trials to run in this invocation (added to any the stored study already has).
    n_trials: int = 20
    # Trials asked and launched together per batch through hydra/launcher; the
    # basic launcher runs a batch sequentially, joblib / submitit in parallel.
    n_jobs: int = 2
    # Abort once more than this fraction of this run's trials failed (1.0: never),
    # so a systematically broken job does not burn the whole budget.
    max_failure_rate: float = 1.0
    # Search space: override key -> override-grammar string, e.g.
    # "interval(0, 0.5)", "tag(log, interval(1e-4, 1e-3))", "choice(a, b)",
    # "range(1, 10, 2)", "0,0.1,0.2". A non-sweep value is applied to every trial.
    # Sweep overrides of the same key on the command line replace these entries.
    # An empty dict rather than None, so +hydra.sweeper.params.KEY=... can add to it.
    params: Optional[Dict[str, str]] = field(default_factory=dict)


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="cpt_optuna_sweeper")
for _name, _node in {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsga2": NSGAIISamplerConfig,
    "grid": GridSamplerConfig,
}.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="cpt_optuna_sweeper")
