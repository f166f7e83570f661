"""A grid, plus baselines beside it, each crossed with the common axes (seeds ...)."""

import itertools
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, ListConfig, OmegaConf

from cpt.cli.sweep_check import check_sweeper_jobs
from cpt.sweep.env_names import BASELINE_ENV_VAR, env_set

from . import config as _config  # noqa: F401  (registers the config with Hydra)


def _axis(override: Override) -> List[str]:
    """`key=a,b` -> ["key=a", "key=b"]; a plain `key=v` -> ["key=v"] (an axis of one)."""
    key = override.get_key_element()
    if override.is_sweep_override():
        if not override.is_discrete_sweep():
            raise ValueError(f"{key}: the grid sweeper takes lists, choice() or range(), not intervals")
        return [f"{key}={v}" for v in override.sweep_string_iterator()]
    return [f"{key}={override.get_value_element_as_str()}"]


def baseline_label(overrides: Sequence[str]) -> str:
    """The name a baseline's runs are tagged with: its overrides, e.g. "recipe=union"."""
    return " ".join(overrides)


def expand(grid: List[Override], common: List[Override], baselines: List[List[str]]) -> List[List[str]]:
    """Every job's override list: grid points × common axes, then baselines × common axes.

    A baseline overriding a common key keeps its own value for that key. Baseline jobs carry
    their label in the job's environment (hydra.job.env_set) so the run can be tagged with it.
    """
    axes = {o.get_key_element(): _axis(o) for o in common}
    grid_axes = [_axis(o) for o in grid]
    jobs = [list(c) + list(g) for c in itertools.product(*axes.values())
            for g in itertools.product(*grid_axes)]
    for b in baselines:
        keys = {o.split("=", 1)[0].lstrip("+~") for o in b}
        kept = [v for k, v in axes.items() if k.lstrip("+~") not in keys]
        label = env_set(BASELINE_ENV_VAR, baseline_label(b))
        jobs += [list(c) + list(b) + [label] for c in itertools.product(*kept)]
    return jobs


def split(grid: Dict[str, str], params: Dict[str, str], baselines: List[Any], arguments: List[str],
          parser: OverridesParser) -> List[List[str]]:
    """The sweeper's config plus the command line -> the job list (no Hydra context needed)."""
    cli = parser.parse_overrides(list(arguments))
    cli_keys = {o.get_key_element() for o in cli}
    grid_o = parser.parse_overrides([f"{k}={v}" for k, v in grid.items() if k not in cli_keys])
    grid_o += [o for o in cli if o.get_key_element() in grid]
    common = parser.parse_overrides([f"{k}={v}" for k, v in params.items() if k not in cli_keys])
    common += [o for o in cli if o.get_key_element() not in grid]
    return expand(grid_o, common, [_as_list(b) for b in baselines])


def _as_list(b: Any) -> List[str]:
    if isinstance(b, (ListConfig, DictConfig)):
        b = OmegaConf.to_container(b)
    if isinstance(b, str):
        return [b]
    if isinstance(b, list) and all(isinstance(x, str) for x in b):
        return list(b)
    raise ValueError(f"hydra.sweeper.baselines: each entry is an override string or a list of them, got {b!r}")


class GridWithBaselinesSweeper(BasicSweeper):
    """The basic sweeper's launch loop over `split`'s job list."""

    def __init__(self, max_batch_size: Optional[int], grid: Optional[Dict[str, str]] = None,
                 baselines: Optional[List[Any]] = None, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=None)
        self.grid = dict(grid or {})
        self.baselines = list(baselines or [])
        self.common = dict(params or {})
        self._arguments: List[str] = []

    def sweep(self, arguments: List[str]) -> Any:
        self._arguments = list(arguments)
        return super().sweep(arguments)

    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        # BasicSweeper.sweep parsed `arguments` (our params are kept out of self.params);
        # the expansion re-parses them with the grid and the baselines.
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = split(self.grid, self.common, self.baselines, self._arguments, parser)
        # Every value of the grid, the common axes and the baselines, before the first job trains.
        check_sweeper_jobs(jobs, self.hydra_context.config_loader, self.config)
        n = max_batch_size or len(jobs) or 1
        return [jobs[i:i + n] for i in range(0, len(jobs), n)]
