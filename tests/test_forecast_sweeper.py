"""hydra/sweeper=forecast on a tiny 4-point η_max grid, in this process (Hydra, Lightning, MLflow
for real): two corners trained, the law fitted, the most promising point trained, the last one
logged as a forecast-only run that nothing takes for a measurement."""

from __future__ import annotations

import math

import pytest

from conftest import ROOT, hydra_multirun
from test_forecast_e2e import BASE, _tracker

LRS = ("1e-3", "2e-3", "4e-3", "8e-3")


def test_choice_of_points_is_the_corners_then_the_best_forecasts_within_budget():
    from cpt.forecast.select import first_points, to_train

    jobs = [[f"warmup={w}", f"lr.max={lr}"] for w in (0, 0.01) for lr in (1, 2, 3)]
    assert first_points(jobs) == [0, 5]
    assert first_points(jobs, [["lr.max=2", "warmup=0.01"]]) == [4]
    with pytest.raises(ValueError, match="lr.max=9 is not a point of the grid"):
        first_points(jobs, [["lr.max=9"]])
    predicted = {1: 2.00, 2: 2.02, 3: 2.005, 4: math.nan}
    assert to_train(predicted, [2.1, 2.2], total=6, margin=0.005, budget=1) == [1, 3]  # 2.02 is 1% off
    assert to_train(predicted, [2.1, 2.2], total=6, margin=0.05, budget=0.5) == [1]  # 3 of 6 trained in all
    assert to_train(predicted, [1.5], total=6, margin=0.005, budget=1) == []  # a measured point is better


@pytest.mark.slow
def test_forecast_sweeper_trains_the_promising_points_and_forecasts_the_rest(tmp_path, prepared_root):
    import shutil

    from test_end_to_end import run_tiny

    out = tmp_path / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    said = hydra_multirun(["-cd", str(ROOT / "sweeps"), "-cn", "forecast-warmup-lr", f"lr.max={','.join(LRS)}", "warmup=0.25",
                           *[o for o in BASE if not o.startswith("warmup=")], "hydra.sweeper.margin=1",
                           "hydra.sweeper.budget=0.75", f"paths.output_dir={out}", f"hydra.sweep.dir={out}/multirun/fs"])
    assert "fitted on 2 of 4 points; training 1 more" in said and "1 forecast only" in said, said
    tracker = _tracker(out)
    trained = {r["params"]["lr.max"] for r in tracker.sweep_records("fs")}
    assert len(trained) == 3 and {str(float(LRS[0])), str(float(LRS[-1]))} <= trained
    (only,) = tracker.sweep_records("fs", kind="forecast")
    assert only["params"]["lr.max"] not in {str(float(v)) for v in trained}
    assert only["tags"]["mlflow.parentRunId"] == tracker.sweep_parent("fs")["run_id"]
    assert "cpt.identity.run_key" not in only["tags"] and not any(k.startswith("final/") for k in only["metrics"])
    assert math.isfinite(only["metrics"]["forecast/final/avg_loss"]) and "forecast/band/final/avg_loss" in only["metrics"]
    # A real run of the forecast-only point trains: it is not "finished already".
    _, result = run_tiny(out, [*BASE, f"lr.max={only['params']['lr.max']}"])  # later overrides win
    assert tracker.record(result.run_id)["params"]["lr.max"] == only["params"]["lr.max"]
    assert len(tracker.records("tags.`cpt.kind` = 'run'")) == 4
