"""A Hydra callback: where the run will write is checked before Hydra makes a directory there.

Hydra creates `hydra.run.dir` / `hydra.sweep.dir` (under `paths.output_dir`) before the task
starts, and a file in the way or a read-only disk is then a Hydra traceback. The checks
themselves are cpt/store/writable.py; the task runs them again (a launcher's job process).
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback


class PathChecks(Callback):
    def on_run_start(self, config, **kwargs) -> None:
        _check(config, "run")

    def on_multirun_start(self, config, **kwargs) -> None:
        _check(config, "sweep")


def _check(config, mode: str) -> None:
    from cpt.errors import UserError, report
    from cpt.store.writable import check_dir, check_paths

    if "paths" not in config or "tracking" not in config:
        return  # another app's run (the callbacks are general)
    try:
        check_paths(config.paths.output_dir, config.tracking.uri)
        check_dir(f"hydra.{mode}.dir", Path(config.hydra[mode].dir))
    except UserError as e:
        raise SystemExit(report(e)) from None  # Hydra prints an exception raised here with its traceback
