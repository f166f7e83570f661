"""Reporting: one log line per finished trial and ``optimization_results.yaml``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


def log_trial(trial: FrozenTrial, working_dir: str | None = None) -> None:
    """Log how a trial ended, so a sweep can be followed from its console output."""
    where = f" [{working_dir}]" if working_dir else ""
    if trial.state == TrialState.COMPLETE:
        log.info(f"Trial {trial.number} COMPLETE values={trial.values} params={trial.params}{where}")
    else:
        log.warning(f"Trial {trial.number} {trial.state.name} params={trial.params}{where}")


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The study's best result(s): best trial if single-objective, else the Pareto front.

    Covers every trial of the study, including those of earlier runs against the
    same storage, since that is what a resumed study optimises.
    """
    states = [t.state for t in study.get_trials(deepcopy=False)]
    summary: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "n_trials": {s.name.lower(): states.count(s) for s in TrialState if states.count(s)},
    }
    completed = TrialState.COMPLETE in states
    if len(study.directions) == 1:
        best = study.best_trial if completed else None
        summary["best_trial"] = best.number if best else None
        summary["best_params"] = dict(best.params) if best else None
        summary["best_value"] = best.value if best else None
    else:
        front = study.best_trials if completed else []
        summary["solutions"] = [
            {"trial": t.number, "params": dict(t.params), "values": list(t.values)} for t in front
        ]
    return summary


def write_results(study: optuna.Study, sweep_dir: Path) -> Path:
    """Write ``optimization_results.yaml`` into the sweep directory and log it."""
    summary = summarize(study)
    path = Path(sweep_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(summary), path)
    if "best_value" in summary:
        if summary["best_value"] is None:
            log.warning(f"No trial of study {study.study_name!r} completed; nothing to report")
        else:
            log.info(f"Best value {summary['best_value']} with params {summary['best_params']}")
    else:
        log.info(f"Pareto front of {len(summary['solutions'])} trial(s)")
    log.info(f"Results written to {path}")
    return path
