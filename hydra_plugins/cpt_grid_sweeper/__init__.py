"""Hydra sweeper: a Cartesian grid plus reference runs beside it (``hydra/sweeper=grid_with_baselines``).

Hydra's basic sweeper only crosses axes. A figure of the papers is a grid (replay 0..50 %)
*and* reference runs that do not depend on its axes (the union, scratch and upstream-only
baselines): crossing them with the grid would train each baseline once per grid point.
This sweeper launches the grid and, beside it, each baseline once per combination of the
remaining axes (e.g. once per seed).

* ``config``  -- the dataclass config registered in Hydra's ConfigStore.
* ``sweeper`` -- the ``Sweeper``: expansion (a pure function) and the basic sweeper's loop.
"""

from cpt.sweep.env_names import BASELINE_ENV_VAR  # the job (cpt.sweep.job_tags) reads the same name

__all__ = ["BASELINE_ENV_VAR"]
