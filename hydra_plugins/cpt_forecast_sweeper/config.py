"""The config of ``hydra/sweeper=forecast``, registered in Hydra's ConfigStore."""

from dataclasses import dataclass, field
from typing import Any, Dict, List

from hydra.core.config_store import ConfigStore


@dataclass
class ForecastSweeperConf:
    _target_: str = "hydra_plugins.cpt_forecast_sweeper.sweeper.ForecastSweeper"
    # The grid: key -> sweep in override grammar, crossed (as hydra/sweeper=grid_with_baselines).
    grid: Dict[str, str] = field(default_factory=dict)
    # Fixed overrides of every job (one value each here: the forecast compares points of one chain).
    params: Dict[str, str] = field(default_factory=dict)
    # Points trained before the fit, each a list of overrides naming a grid point
    # ([] = the grid's two opposite corners: cpt/forecast/select.py).
    first: List[Any] = field(default_factory=list)
    # Train a forecast point if its objective is within this fraction of the best so far.
    margin: float = 0.005
    # At most this fraction of the grid is trained, the first points included.
    budget: float = 0.5
    # The law (cpt forecast --law): auto, cpt, cpt-replay.
    law: str = "auto"


ConfigStore.instance().store(group="hydra/sweeper", name="forecast", node=ForecastSweeperConf,
                             provider="cpt_forecast_sweeper")
