"""A tiny 3-point sweep run in this process (Hydra, Lightning, MLflow for real): the stability-gap
metrics it logs, `cpt forecast` fitted to its curves, and its report's forecast section."""

from __future__ import annotations

import csv

import pytest

from conftest import TINY, hydra_multirun

pytestmark = pytest.mark.slow

STAGE1_STEPS = 12
LRS = ("1e-3", "3e-3", "6e-3")
BASE = [o for o in TINY if not o.startswith(("warmup=", "shift.datasets.1.tokens="))] + [
    "pretrain.lr.max=3e-3", f"shift.datasets.1.tokens={STAGE1_STEPS * 512}", "warmup=0.25"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, prepared_root):
    import shutil

    out = tmp_path_factory.mktemp("fc") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    printed = hydra_multirun(["-m", f"lr.max={','.join(LRS)}", *BASE, f"paths.output_dir={out}",
                              f"hydra.sweep.dir={out}/multirun/fc"])
    return out, printed


def _tracker(out):
    from cpt.config.schema import Tracking
    from cpt.store.tracking import Tracker

    return Tracker(Tracking(f"sqlite:///{out}/mlflow.db", "cpt", str(out / "mlartifacts")))


def test_every_run_logs_the_stability_gap_of_its_stage_as_its_curves_show(sweep):
    from cpt.plan.gap import gap_metrics

    out, _ = sweep
    tracker = _tracker(out)
    runs = tracker.records("tags.`cpt.kind` = 'run'")
    assert len(runs) == 3
    for r in runs:
        for name in ("syn-en-a", "syn-en-b"):
            curve = tracker.history(r["run_id"], f"val/{name}/loss")
            want = gap_metrics(name, [(t - curve[0][0], v) for t, v in curve])
            got = {k: v for k, v in r["metrics"].items() if k.startswith(f"gap/{name}/")}
            assert got == pytest.approx(want)
    with open(out / "reports" / "fc" / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["D0_gap_depth_mean"]) >= 0 for r in rows)
    assert "## Stability gap of the last stage" in (out / "reports" / "fc" / "report.md").read_text()


def test_forecast_fits_two_runs_and_forecasts_the_grid(sweep, capsys):
    from cpt.cli.main import main as cli

    out, _ = sweep
    rc = cli(["forecast", "fc", *BASE, f"paths.output_dir={out}", "--runs", "2", "--bootstrap", "3",
              "--at", f"lr.max={','.join(LRS)}", "--name", "fc2"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "fitted on 2 runs" in printed and "syn-en-a: law cpt" in printed
    table = printed.split("bootstrap)\n")[1].splitlines()
    assert table[0].split() == ["lr.max", "upstream", "downstream", "avg"]
    assert [row.split()[0] for row in table[2:5]] == list(LRS)
    assert all(row.count("±") == 3 for row in table[2:5])
    assert "predicted best (final/avg_loss): lr.max=" in printed
    folder = out / "forecasts" / "fc2"
    assert {"forecast.png", "forecast.csv"} <= {p.name for p in folder.iterdir()}
    (rec,) = _tracker(out).records("tags.`cpt.kind` = 'forecast'")
    assert rec["status"] == "FINISHED" and len(rec["params"]["forecast.fit_runs"].split(",")) == 2
    assert {"fit/syn-en-a/rmse", "fit/syn-en-b/mape"} <= set(rec["metrics"])
    keys = [k for k in rec["metrics"] if not k.startswith("fit/")]
    assert keys and all(k.startswith("forecast/") for k in keys)
    assert "forecast/lr.max:6e-3/final/avg_loss" in rec["metrics"]
    assert "forecast.png" in _tracker(out).artifacts(rec["run_id"])


def test_the_sweep_report_forecasts_its_third_run_from_the_first_two(sweep):
    out, _ = sweep
    md = (out / "reports" / "fc" / "report.md").read_text()
    part = md.split("## Forecast")[1]
    assert "fitted on the first 2 continual runs (lr.max=0.001, lr.max=0.003)" in part
    rows = [line for line in part.splitlines() if line.startswith("| lr.max=")]
    assert [r.split(" | ")[1] for r in rows] == ["yes", "yes", "no"]
    assert all(r.count("±") == 3 for r in rows)  # two datasets and the objective
    assert "| syn-en-a | " in part and "| syn-en-b | " in part
    assert "Spearman rank correlation of `final/avg_loss`, forecast vs measured, over all 3 runs: " in part
    assert "the forecast best is " in part
