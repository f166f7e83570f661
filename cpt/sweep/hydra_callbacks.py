"""Hydra callbacks: a multirun's parent MLflow run, and when it ends the table of its grid and its report.

The parent (tag cpt.kind=sweep, keyed by the sweep id: the multirun directory's name) is made
before the first job starts, in the process that launches them; the jobs, in this process or in
others (joblib, submitit), find it in the store by that id and become its children. It ends
FINISHED, or FAILED when a job failed; a multirun that stops early (an error, Ctrl-C) ends it at
exit, FAILED or KILLED.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    current: "SweepSummary | None" = None  # this process's multirun, for `abandon`

    def __init__(self) -> None:
        self._open: tuple | None = None  # (tracker, parent run id) until the parent is ended

    def on_multirun_start(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        from cpt.errors import UserError
        from cpt.sweep.names import sweep_name, swept_keys

        if config.get("dry_run"):
            return  # nothing will run
        _check_optuna_storage(config)
        try:  # the store alone: a bad swept value (warmup=1.5,0.1) fails its own job, not the sweep's run
            from cpt.config.schema import Tracking
            from cpt.store.tracking import Tracker

            tracker = Tracker(Tracking(**OmegaConf.to_container(config.tracking, resolve=True)))
        except (UserError, TypeError, ValueError):
            return  # every job reports it
        overrides = list(config.hydra.overrides.task)
        swept = swept_keys(overrides, OmegaConf.to_container(config.hydra.sweeper, resolve=False))
        sweep_id = Path(config.hydra.sweep.dir).name
        command = " ".join(["python run.py -m", *_config_args(config), *overrides])
        tags = {"cpt.swept_keys": ",".join(swept), "cpt.overrides": " ".join(overrides),
                "cpt.sweep_dir": str(config.hydra.sweep.dir),
                "mlflow.note.content": f"sweep {sweep_id}: {command}"}
        self._open = (tracker, tracker.open_sweep(sweep_id, sweep_name(config.hydra.job.config_name, swept), tags))
        atexit.register(self._end_at_exit)
        SweepSummary.current = self

    def on_multirun_end(self, config, **kwargs) -> None:
        from cpt.errors import UserError

        try:
            from cpt.config.schema import parse
            from cpt.sweep.table import sweep_table

            run_cfg = parse(config)
            if run_cfg.dry_run:
                return  # nothing ran
            sweep_id = Path(config.hydra.sweep.dir).name
            table = sweep_table(run_cfg.tracking, sweep_id)
            print(table)
        except UserError:
            self._end(None)
            return  # the jobs already reported it
        try:
            from cpt.reports import write_report

            self._log_text(table, "sweep_table.txt")
            path = write_report(run_cfg.tracking, sweep_id, run_cfg.paths.root)
        except UserError as e:  # e.g. no job finished
            print(f"no report: {e}")
            return
        finally:
            self._end(sweep_id)
        print(f"report: {path}\n  again, or after more runs:  cpt report {sweep_id}{_locate(run_cfg)}")

    def _log_text(self, text: str, name: str) -> None:
        from cpt.store.tracking import RunLog

        if self._open:
            tracker, run_id = self._open
            RunLog(tracker.client, run_id).log_text(text, name)

    def _end(self, sweep_id: str | None) -> None:
        """End the parent: FAILED if a run of the sweep failed (or, sweep_id None, it cannot tell)."""
        from cpt.store.run_status import FAILED, FINISHED

        if self._open is None:
            return
        tracker, run_id = self._open
        failed = sweep_id is None or any(r["status"] == FAILED for r in tracker.sweep_records(sweep_id))
        tracker.end_run(run_id, FAILED if failed else FINISHED)
        self._open = None
        atexit.unregister(self._end_at_exit)

    def _end_at_exit(self) -> None:
        """The multirun stopped before its end (a job raised, Ctrl-C): the parent is not left RUNNING."""
        from cpt.store.run_status import FAILED, KILLED

        if self._open is not None:
            tracker, run_id = self._open
            interrupted = getattr(sys, "last_type", None) is KeyboardInterrupt
            tracker.end_run(run_id, KILLED if interrupted else FAILED)
            self._open = None


def _config_args(config) -> list[str]:
    name = config.hydra.job.config_name
    return [] if not name or name == "config" else ["-cn", name]


def _locate(cfg) -> str:
    """The overrides that point `cpt report` at this sweep's store, where it is not the default."""
    where = {"paths.output_dir": (cfg.paths.output_dir, "outputs"),
             "tracking.uri": (cfg.tracking.uri, f"sqlite:///{cfg.paths.output_dir}/mlflow.db"),
             "tracking.experiment": (cfg.tracking.experiment, "cpt")}
    return "".join(f" {key}={value}" for key, (value, default) in where.items() if value != default)


def abandon() -> None:
    """A sweeper rejected a value before its first job (cpt/cli/sweep_check.py): the parent ends
    FAILED now (in this process a test may go on; at exit is too late for it)."""
    if SweepSummary.current is not None:
        SweepSummary.current._end_at_exit()


def _check_optuna_storage(config) -> None:
    """An Optuna study database that cannot be opened: one line before the sweep's run exists."""
    from cpt.errors import UserError, report

    storage = config.hydra.sweeper.get("storage")
    if storage:
        from hydra_plugins.cpt_optuna_sweeper.study import check_storage

        try:
            check_storage(storage)
        except UserError as e:
            raise SystemExit(report(e)) from None
