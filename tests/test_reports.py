"""Reports: the pure analysis (tables of numbers), then a tiny shipped sweep run end to end
through Hydra in this process (real Lightning, real MLflow SQLite), its report, the stability
gap in its logged curves, and a tiny Optuna study that a second invocation continues."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from cpt.config.schema import occurrence_names, parse as parse_cfg
from cpt.reports.analysis import Variant, compute_rows, pareto_front, stat, swept_keys, table, variants
from cpt.reports.load import Run

from conftest import ROOT, TINY, TINY_STEPS, compose, hydra_multirun, parse

SWEEPS = ROOT / "sweeps"


# --------------------------------------------------------------------------- pure analysis

def test_a_repeated_dataset_gets_its_occurrence_in_its_name():
    assert occurrence_names(["a", "b"]) == ["a", "b"]
    assert occurrence_names(["a", "a"]) == ["a", "a.1"]
    assert occurrence_names(["a", "b", "a", "a"]) == ["a", "b", "a.1", "a.2"]


def test_d0_to_d0_names_the_repeat_and_reads_one_shard(out):
    from cpt.data.prepare import prepare
    from cpt.errors import UserError

    cfg = parse(TINY + ["shift=synthetic-same"], out)
    assert [d.name for d in cfg.shift.datasets] == ["syn-en-a", "syn-en-a.1"]
    data = prepare(cfg)
    assert data.shards["syn-en-a.1"] is data.shards["syn-en-a"]
    # x, x, x.1: the repeat's generated name would collide with a given one
    dc = compose(TINY + ["shift=synthetic-same"], out)
    raw = OmegaConf.to_container(OmegaConf.masked_copy(dc, [k for k in dc if k != "hydra"]), resolve=True)
    raw["shift"]["datasets"].append({**raw["shift"]["datasets"][0], "name": "syn-en-a.1"})
    with pytest.raises(UserError, match=r"distinct dataset names \(a repeat of `x` is named `x.1`"):
        parse_cfg(raw)


@pytest.mark.parametrize("points, front", [
    ([(1, 3), (2, 2), (3, 1)], [0, 1, 2]),             # a clean trade-off: all on the front
    ([(1, 3), (2, 2), (3, 3), (2.5, 2.5)], [0, 1]),    # (3,3) and (2.5,2.5) are beaten by (2,2)
    ([(2, 2), (1, 1)], [1]),                           # one point beats the other on both
    ([(1, 2), (1, 3)], [0]),                           # tie on x: the lower y wins
    ([(1, 1), (1, 1)], [0, 1]),                        # exact ties keep both
    ([(math.nan, 1), (2, 2)], [1]),                    # a missing value is never on the front
])
def test_pareto_front(points, front):
    assert pareto_front(points) == front


def test_stat_is_mean_and_sample_std():
    s = stat([2.0, 4.0, 6.0])
    assert (s.mean, s.std, s.n) == (4.0, 2.0, 3)
    assert s.text(2) == "4.00 ± 2.00"
    assert stat([1.5]).text(1) == "1.5" and stat([]).text() == "-"


def _run(run_id, params, metrics, tags=None) -> Run:
    base = {"shift.datasets.0.name": "d0", "shift.datasets.1.name": "d1", "shift.datasets.0.tokens": "100",
            "shift.datasets.1.tokens": "100", "recipe": "cpt", "seed": "0", "shift": "w", "shift.name": "w"}
    return Run(run_id, run_id, {**base, **params}, tags or {}, metrics)


def _m(d0, d1, own=100, total=200):
    return {"final/d0/loss": d0, "final/d1/loss": d1, "final/upstream_loss": d0, "final/downstream_loss": d1,
            "final/avg_loss": (d0 + d1) / 2, "compute/tokens": own, "compute/tokens_with_prefix": total}


def test_swept_keys_skip_seed_and_keys_that_come_with_a_group_choice():
    params = [{"seed": "0", "lr.max": "1", "shift": "a", "shift.name": "a", "pretrain.warmup": "0",
               "schedule": "cosine", "schedule.pretrain_schedule": "cosine", "pretrain.schedule": "cosine"},
              {"seed": "1", "lr.max": "2", "shift": "b", "shift.name": "b", "pretrain.warmup": "1",
               "schedule": "infinite-cosine", "schedule.pretrain_schedule": "infinite-cosine",
               "schedule.cooldown": "0.6", "pretrain.schedule": "infinite-cosine"}]
    # shift.name and schedule.* come with their groups, pretrain.schedule copies one of them;
    # pretrain.warmup splits the runs like lr.max but is a knob of its own
    assert swept_keys(params) == ["shift", "schedule", "lr.max", "pretrain.warmup"]
    assert swept_keys(params[:1]) == []


def test_variants_aggregate_seeds_and_put_baselines_last_in_the_papers_order():
    runs = [_run("a0", {"replay": "0.05"}, _m(2.2, 2.5)),
            _run("a1", {"replay": "0.05", "seed": "1"}, _m(2.4, 2.7)),
            _run("b0", {"replay": "0"}, _m(2.5, 2.5)),
            _run("s", {"recipe": "scratch"}, _m(2.9, 2.5)),
            _run("u", {"recipe": "union"}, _m(2.1, 2.6, own=200, total=200), tags={"cpt.baseline": "recipe=union"}),
            _run("c", {"schedule": "constant"}, _m(2.3, 2.9), tags={"cpt.baseline": "schedule=constant"})]
    keys, vs = variants(runs)
    assert keys == ["replay"]
    assert [v.label for v in vs] == ["replay=0", "replay=0.05", "union", "scratch", "schedule=constant"]
    assert [len(v.runs) for v in vs] == [1, 2, 1, 1, 1]
    head, rows = table(vs)
    assert head == ["run", "D0 loss (d0)", "D1 loss (d1)", "AVG", "seeds"]
    assert rows[1] == ["replay=0.05", "2.3000 ± 0.1414", "2.6000 ± 0.1414", "2.4500 ± 0.1414", "2"]
    assert rows[2] == ["union", "2.1000", "2.6000", "2.3500", "1"]
    compute, source = compute_rows(vs)
    assert "union run" in source
    assert [(c.own_ratio, c.total_ratio) for c in compute][:3] == [(0.5, 1.0), (0.5, 1.0), (1.0, 1.0)]


def test_without_a_union_run_compute_is_relative_to_the_chain_budgets():
    vs = [Variant("x", {}, False, [_run("a", {}, _m(1, 1, own=50, total=150))])]
    (row,), source = compute_rows(vs)
    assert (row.own_ratio, row.total_ratio) == (0.25, 0.75) and "budgets" in source


# --------------------------------------------------------------------------- end to end

GRID = ["warmup=0,0.25", "lr.max=3e-3,1e-2"]  # replace the 12-point grid's axes: 4 tiny jobs
# Beside the grid: D0 → D0 (shares stage 0) and the D0-only reference (no training at all).
BASELINE = "hydra.sweeper.baselines=['shift=synthetic-same','recipe=upstream-only']"
STAGE1_STEPS = 12
# TINY's stage 0 at 10x its η_max: a model worth forgetting; continual stages half as long.
BASE = [o for o in TINY if not o.startswith(("warmup=", "shift.datasets.1.tokens="))] + [
    "pretrain.lr.max=3e-3", f"shift.datasets.1.tokens={STAGE1_STEPS * 512}"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, prepared_root):
    import shutil

    out = tmp_path_factory.mktemp("sweep") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    printed = hydra_multirun(["-cd", str(SWEEPS), "-cn", "warmup-lr-grid", *GRID, BASELINE, *BASE,
                              f"paths.output_dir={out}", f"hydra.sweep.dir={out}/multirun/tiny-grid"])
    return out, printed


def _tracker(out):
    from cpt.config.schema import Tracking
    from cpt.store.tracking import Tracker

    return Tracker(Tracking(f"sqlite:///{out}/mlflow.db", "cpt", str(out / "mlartifacts")))


def _png_variance(path) -> float:
    from matplotlib.image import imread

    return float(np.var(imread(path)[..., :3]))


@pytest.mark.slow
def test_tiny_sweep_writes_its_report_with_figures_and_the_papers_table(swept):
    out, printed = swept
    report = out / "reports" / "tiny-grid"
    assert f"report: {report / 'report.md'}" in printed
    # The D0 → D0 baseline is another chain (its D1 is syn-en-a.1): a section and figures of its own.
    weak, same = "shift=synthetic-weak", "shift=synthetic-same"
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == sorted(
        [f"{kind}-shift_synthetic-weak.png" for kind in ("compute", "curves", "final_vs_lr.max", "final_vs_warmup",
                                                         "heatmap_warmup_x_lr.max", "lr", "tradeoff")]
        + [f"{kind}-shift_synthetic-same.png" for kind in ("compute", "curves", "lr", "tradeoff")])
    for p in report.glob("*.png"):  # a blank canvas has zero variance; a drawn figure far more
        assert _png_variance(p) > 1e-3, p.name
    md = (report / "report.md").read_text()
    labels = {weak: ["warmup=0, lr.max=0.003", "warmup=0, lr.max=0.01", "warmup=0.25, lr.max=0.003",
                     "warmup=0.25, lr.max=0.01", "upstream-only"],  # grid, then baselines
              same: ["shift=synthetic-same"]}
    with open(report / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["chain"], r["run"]) for r in table] == [(c, label) for c, ls in labels.items() for label in ls]
    assert [r["baseline"] for r in table] == ["0", "0", "0", "0", "1", "1"]
    for r in table:
        assert float(r["avg_loss_mean"]) == pytest.approx((float(r["D0_loss_mean"]) + float(r["D1_loss_mean"])) / 2)
    # each chain's table names its own D1: syn-en-b in the grid's, syn-en-a.1 (D0 again) in D0 → D0's
    for chain, d1 in ((weak, "syn-en-b"), (same, "syn-en-a.1")):
        part = md.split(f"## Chain `{chain}`")[1].split("## Chain")[0]
        rows = [line.split(" | ")[0][2:] for line in part.split("### Final validation loss")[1].split("##")[0].splitlines()
                if line.startswith("| ") and not line.startswith("| run")]
        assert rows == labels[chain]
        assert f"| run | D0 loss (syn-en-a) | D1 loss ({d1}) | AVG | seeds |" in part
        assert f"- datasets: D0 = syn-en-a, D1 = {d1}" in part
    for png in pngs:
        assert f"({png})" in md


@pytest.mark.slow
def test_report_is_logged_to_one_mlflow_run_and_rewritten_in_place(swept):
    from cpt.cli.main import main as cli

    out, _ = swept
    assert cli(["report", "tiny-grid", f"paths.output_dir={out}"]) == 0  # a second time
    tracker = _tracker(out)
    assert not tracker.records("tags.`cpt.kind` = 'report'")  # the sweep's parent holds the report
    (rec,) = tracker.records("tags.`cpt.kind` = 'sweep'")
    assert rec["tags"]["cpt.sweep_id"] == "tiny-grid" and rec["status"] == "FINISHED"
    assert {"report.md", "curves-shift_synthetic-weak.png", "table.csv", "runs.csv"} <= set(tracker.artifacts(rec["run_id"]))
    assert not [p for p in (out / "reports").iterdir() if p.name.startswith(".")]  # no leftovers
    baseline = [r for r in tracker.records("tags.`cpt.kind` = 'run'") if r["tags"].get("cpt.baseline")]
    assert [r["tags"]["cpt.baseline"] for r in baseline] == ["shift=synthetic-same", "recipe=upstream-only"]
    # the repeat of D0 has its own metric keys, and the run continued the grid's stage 0
    assert {"final/syn-en-a/loss", "final/syn-en-a.1/loss", "val/syn-en-a.1/loss"} <= set(baseline[0]["metrics"])
    grid = [r for r in tracker.records("tags.`cpt.kind` = 'run'") if not r["tags"].get("cpt.baseline")]
    stage0 = {r["tags"]["cpt.prefix_run_id"] for r in grid}
    assert len(stage0) == 1 and {b["tags"]["cpt.prefix_run_id"] for b in baseline} == stage0
    # upstream-only is the stage-0 model itself: its final D0 loss is stage 0's last one
    d0_end = tracker.history(stage0.pop(), "val/syn-en-a/loss")[-1][1]
    assert baseline[1]["metrics"]["final/syn-en-a/loss"] == pytest.approx(d0_end, abs=1e-6)


@pytest.mark.slow
def test_report_of_an_unknown_sweep_is_one_line(swept, capsys):
    from cpt.cli.main import main as cli

    out, _ = swept
    assert cli(["report", "no-such-sweep", f"paths.output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: report no-such-sweep: no finished runs") and "tiny-grid" in err
    assert "\n" not in err


@pytest.mark.slow
def test_high_lr_rewarm_shows_the_stability_gap_in_the_logged_d0_loss(swept):
    """D0's loss rises after the re-warm, then settles as the LR decays (2308.04014)."""
    out, _ = swept
    tracker = _tracker(out)
    (run,) = [r for r in tracker.records("tags.`cpt.kind` = 'run'")
              if r["params"]["lr.max"] == "0.01" and r["params"]["warmup"] == "0.25"]
    start = TINY_STEPS * 512  # the continual stage begins where stage 0 ended
    d0 = tracker.history(run["run_id"], "val/syn-en-a/loss")
    assert d0[0][0] == start
    before = tracker.history(run["tags"]["cpt.prefix_run_id"], "val/syn-en-a/loss")[-1][1]
    first, peak, last = d0[0][1], max(v for _, v in d0), d0[-1][1]
    assert first == pytest.approx(before, abs=1e-6)  # continues from the stage-0 weights
    assert peak > first + 0.05  # the gap: the loss rises after the re-warm ...
    assert last < peak - 0.05  # ... and settles
    peak_step = max(d0, key=lambda sv: sv[1])[0]
    assert start < peak_step < d0[-1][0]


@pytest.mark.slow
def test_optuna_study_runs_and_a_second_invocation_adds_trials(swept):
    import optuna

    out, _ = swept
    tiny_d1 = ["shift.datasets.1.tokens=4096"]  # 8-step trials: the study, not the training, is tested
    args = ["-cd", str(SWEEPS), "-cn", "optuna-replay", *BASE[:-1], *tiny_d1, f"paths.output_dir={out}",
            "hydra.sweeper.sampler.n_startup_trials=2"]
    first = hydra_multirun(args + ["hydra.sweeper.n_trials=3"])
    assert "report:" in first
    hydra_multirun(args + ["hydra.sweeper.n_trials=1"])
    study = optuna.load_study(study_name="replay-avg", storage=f"sqlite:///{out}/optuna.db")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" and 0 <= t.params["replay"] <= 0.5 for t in study.trials)
    runs = _tracker(out).records("tags.`cpt.optuna.study` = 'replay-avg' and tags.`cpt.kind` = 'run'")
    assert sorted(int(r["tags"]["cpt.optuna.trial"]) for r in runs) == [0, 1, 2, 3]
    for r in runs:  # each trial's MLflow run holds the replay Optuna chose and the value it returned
        t = study.trials[int(r["tags"]["cpt.optuna.trial"])]
        assert float(r["params"]["replay"]) == pytest.approx(t.params["replay"])
        assert r["metrics"]["final/avg_loss"] == pytest.approx(t.value)
    assert sorted(p.name for p in (out / "multirun" / "replay-avg").iterdir() if p.is_dir()) == list("0123")
    report = (out / "reports" / "replay-avg" / "report.md").read_text()
    assert "4 finished runs" in report and "`replay`" in report
