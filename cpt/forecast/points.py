"""Forecast-only runs: the points a forecast-driven sweep did not train, logged as MLflow runs of
their own (cpt.kind=forecast, tag cpt.forecast.point) under the sweep's parent run.

Their metrics are forecast/<metric> and forecast/band/<metric>, never final/*, and they carry no
run-identity tag: nothing takes them for measurements, and a later real run of the same point
trains (it is not "finished already").
"""

from __future__ import annotations


def log_forecast_only(tracking, sweep_id: str, forecasts: list, fit_ids: list[str]) -> list[str]:
    """One run per forecast; returns their ids."""
    from cpt.store.tracking import SWEEP_IDS_TAG, Tracker
    from cpt.sweep.names import run_name

    if not forecasts:
        return []
    tracker = Tracker(tracking)
    parent = tracker.sweep_parent(sweep_id)
    ids = []
    for f in forecasts:
        tags = {"cpt.kind": "forecast", "cpt.forecast.point": " ".join(f.overrides), "cpt.sweep_id": sweep_id,
                SWEEP_IDS_TAG: sweep_id, **({"mlflow.parentRunId": parent["run_id"]} if parent else {})}
        params = {**dict(o.split("=", 1) for o in f.overrides), "forecast.fit_runs": ",".join(fit_ids)}
        log = tracker.start_run(f"forecast {run_name(f.overrides)}", params, tags)
        log.log_metrics({f"forecast/{k}": v for k, v in f.metrics.items()}, 0)
        log.log_metrics({f"forecast/band/{k}": v for k, v in f.band.items()}, 0)
        log.end("FINISHED")
        ids.append(log.run_id)
    return ids
