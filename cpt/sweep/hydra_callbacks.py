"""Hydra callbacks: when a multirun ends, the table of its grid and its report."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        from cpt.errors import UserError

        try:
            from cpt.config.schema import parse
            from cpt.sweep.table import sweep_table

            run_cfg = parse(config)
            if run_cfg.dry_run:
                return  # nothing ran
            sweep_id = Path(config.hydra.sweep.dir).name
            print(sweep_table(run_cfg.tracking, sweep_id))
        except UserError:
            return  # the jobs already reported it
        try:
            from cpt.reports import write_report

            path = write_report(run_cfg.tracking, sweep_id, run_cfg.paths.root)
        except UserError as e:  # e.g. no job finished
            print(f"no report: {e}")
            return
        print(f"report: {path}\n  again, or after more runs:  cpt report {sweep_id}{_locate(run_cfg)}")


def _locate(cfg) -> str:
    """The overrides that point `cpt report` at this sweep's store, where it is not the default."""
    where = {"paths.output_dir": (cfg.paths.output_dir, "outputs"),
             "tracking.uri": (cfg.tracking.uri, f"sqlite:///{cfg.paths.output_dir}/mlflow.db"),
             "tracking.experiment": (cfg.tracking.experiment, "cpt")}
    return "".join(f" {key}={value}" for key, (value, default) in where.items() if value != default)
