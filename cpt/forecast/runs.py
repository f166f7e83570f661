"""The runs a forecast is fitted to, from MLflow (through cpt.store.tracking and the report's
loader), each with its config (from its logged params) and its chain's curves."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cpt.errors import UserError


@dataclass
class Fitted:
    """One finished continual run as the laws see it."""

    run: object  # cpt.reports.load.Run, prefixes loaded
    cfg: object  # its RunConfig
    points: dict[str, list[tuple[int, float]]]  # dataset -> (tokens since the chain began, loss), prefix first


def points_of(run, names: list[str]) -> dict[str, list[tuple[int, float]]]:
    """Every dataset's val loss along the run's chain: its prefixes' curves, then its own."""
    out = {}
    for name in names:
        key = f"val/{name}/loss"
        out[name] = [p for r in [*run.prefixes, run] for p in r.curves.get(key, [])]
    return out


def continual(run) -> bool:
    from cpt.reports.analysis import baseline_label

    return baseline_label(run.params, run.tags) is None and run.params.get("recipe", "cpt") == "cpt"


def fitted(run, compose_overrides: list[str] | None = None) -> Fitted:
    """Its config from its logged params; where they do not parse (a run of another cpt version),
    composed from its overrides (tag cpt.overrides) after the command's own."""
    from cpt.forecast.configs import config_from_params

    try:
        cfg = config_from_params(run.params)
    except UserError:
        from cpt.cli.compose import compose_run_config

        cfg = compose_run_config([*(compose_overrides or []), *run.tags.get("cpt.overrides", "").split()])
    return Fitted(run, cfg, points_of(run, [d.name for d in cfg.shift.datasets]))


def load_fitted(tracking, ids: list[str], compose_overrides: list[str] | None = None) -> list[Fitted]:
    """The finished continual runs named by `ids`: MLflow run ids or sweep ids (all their finished
    runs), in the order given (a sweep's by start time); baselines and merges are left out."""
    from cpt.reports.load import Run, prefix_chain, with_curves
    from cpt.store.tracking import Tracker, store_exists

    if not store_exists(tracking):
        raise UserError(f"tracking.uri={tracking.uri}: no MLflow store there")
    tracker, known, out = Tracker(tracking), {}, []
    for i in ids:
        record = tracker.record(i) if re.fullmatch(r"[0-9a-f]{32}", i) else None
        records = [record] if record else [r for r in tracker.sweep_records(i) if r["status"] == "FINISHED"]
        if not records:
            raise UserError(f"forecast: {i}: no MLflow run or finished sweep runs of that id in {tracking.uri}")
        for rec in records:
            run: Run = with_curves(tracker, rec, known)
            run.prefixes = prefix_chain(tracker, run, known)
            if continual(run) and run.prefixes:
                out.append(fitted(run, compose_overrides))
    if not out:
        raise UserError(f"forecast: {' '.join(ids)}: no finished continual (recipe=cpt) runs to fit whose earlier "
                        f"stages' MLflow runs are in {tracking.uri} (the laws fit the chain's whole curve)")
    return out
