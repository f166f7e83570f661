"""Hydra callbacks: the table of a multirun's grid, printed when the sweep ends."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        from cpt.errors import UserError

        try:
            from cpt.config import parse
            from cpt.sweep_table import sweep_table

            run_cfg = parse(config)
            print(sweep_table(run_cfg.tracking, Path(config.hydra.sweep.dir).name))
        except UserError:
            pass  # the jobs already reported it
