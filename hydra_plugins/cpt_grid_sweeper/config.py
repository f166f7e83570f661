"""The config of ``hydra/sweeper=grid_with_baselines``, registered in Hydra's ConfigStore."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class GridWithBaselinesConf:
    _target_: str = "hydra_plugins.cpt_grid_sweeper.sweeper.GridWithBaselinesSweeper"
    # Jobs per launcher batch (None: all at once), as in the basic sweeper.
    max_batch_size: Optional[int] = None
    # The figure's axes: key -> sweep in override grammar ("0,0.01,0.05", "range(0,4)"),
    # crossed with each other. A command-line sweep of one of these keys replaces its axis.
    grid: Dict[str, str] = field(default_factory=dict)
    # Reference runs beside the grid: each an override string or a list of them
    # (e.g. "recipe=union", or ["schedule=constant", "lr.max=3e-4"]); not crossed with `grid`.
    baselines: List[Any] = field(default_factory=list)
    # Axes crossed with every job, baselines included (e.g. seed: 0,1,2). Command-line
    # overrides of keys that are not grid axes land here.
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="grid_with_baselines", node=GridWithBaselinesConf,
                             provider="cpt_grid_sweeper")
