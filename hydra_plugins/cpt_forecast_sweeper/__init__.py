"""Hydra sweeper: a grid that trains only what a loss-law forecast cannot rule out
(``hydra/sweeper=forecast``).

It trains the grid's informative points first, fits the laws of cpt/forecast/law.py to their
curves, forecasts every other point, trains those that could be within a margin of the best,
and logs the rest as forecast-only MLflow runs (cpt.kind=forecast, metrics forecast/*).

* ``config``  -- the dataclass config registered in Hydra's ConfigStore.
* ``sweeper`` -- the ``Sweeper``: two launches around one fit.
"""
