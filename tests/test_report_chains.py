"""A report over several chains (issue #15): runs of two shifts, a union baseline each, built as
the records the report loader returns (params as cpt logs them: the flattened resolved config
plus the group choices), then once through a real MLflow store written with MlflowClient.
Figures are drawn but not saved as PNGs (tests/test_reports.py's sweep saves them)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from omegaconf import OmegaConf

from cpt.config.schema import GROUPS
from cpt.reports import plots
from cpt.reports.analysis import chain_labels, chains, table, variants
from cpt.reports.load import Loaded, Run

from conftest import compose

# The real report's shape: a replay grid per shift, each sweep at its own warm-up (so labels
# that named every key read "shift=…, replay=…, warmup=…"), and a union baseline per shift.
SHIFTS = {"synthetic-weak": ("syn-en-b", "0.01"), "synthetic-strong": ("syn-de", "0.02")}
REPLAYS = ("0", "0.05")
EVERY = 0.05  # of the stage: a continual run's val cadence, denser over the zoom's window


@pytest.fixture(scope="module")
def logged():
    """shift -> the params a run of it logs (cpt/cli/task.py: flatten(resolved) + group choices)."""
    from cpt.store.tracking import flatten

    out = {}
    for shift in SHIFTS:
        dc = compose([f"shift={shift}"])
        choices = {g: dc.hydra.runtime.choices.get(g) for g in GROUPS}
        resolved = OmegaConf.to_container(OmegaConf.masked_copy(dc, [k for k in dc if k != "hydra"]), resolve=True)
        out[shift] = {k: str(v) for k, v in {**flatten(resolved), **choices}.items()}
    return out


def _names(params) -> list[str]:
    return [params["shift.datasets.0.name"], params["shift.datasets.1.name"]]


def _curve(start: int, length: int, level: float, dense: bool) -> list[tuple[int, float]]:
    steps = sorted({int(start + length * f) for f in
                    ([i * EVERY / 5 for i in range(40)] if dense else []) + [i * EVERY for i in range(21)]})
    return [(t, level + 0.3 * ((t - start) / length) * (1 - (t - start) / length)) for t in steps]


def _records(logged) -> list[Run]:
    """Per shift: stage 0 (a prefix run), the replay grid continuing it, and a union baseline."""
    runs = []
    for shift, (d1, warmup) in SHIFTS.items():
        base = {**logged[shift], "warmup": warmup}
        names, t = _names(base), int(base["shift.datasets.0.tokens"])
        stage0 = Run(f"{shift}-stage0", "stage 0", base, {"cpt.kind": "prefix"}, {},
                     {f"val/{n}/loss": _curve(0, t, 3.0 + k, False) for k, n in enumerate(names)})
        for replay in REPLAYS:
            d0, d1_loss = 2.2 + float(replay), 2.6 - float(replay)
            runs.append(Run(f"{shift}-{replay}", f"replay={replay}", {**base, "replay": replay},
                            {"cpt.kind": "run", "cpt.recipe": "cpt", "cpt.prefix_run_id": stage0.run_id},
                            _final(names, d0, d1_loss, t),
                            {f"val/{n}/loss": _curve(t, t, v, True) for n, v in zip(names, (d0, d1_loss))},
                            [stage0]))
        union = {**base, "recipe": "union", "recipe.name": "union"}
        runs.append(Run(f"{shift}-union", "recipe=union", union,
                        {"cpt.kind": "run", "cpt.recipe": "union", "cpt.baseline": "recipe=union"},
                        _final(names, 2.1, 2.5, 2 * t, 2 * t),
                        {f"val/{n}/loss": _curve(0, 2 * t, 2.1, False) for n in names}))
    return runs


def _final(names, d0: float, d1: float, own: int, total: int | None = None) -> dict:
    return {f"final/{names[0]}/loss": d0, f"final/{names[1]}/loss": d1, "final/upstream_loss": d0,
            "final/downstream_loss": d1, "final/avg_loss": (d0 + d1) / 2, "compute/tokens": own,
            "compute/tokens_with_prefix": total or 2 * own}


def test_a_baseline_is_a_variant_of_its_chain_and_each_chain_its_own_table(logged):
    runs = _records(logged)
    _, pooled = variants(runs)  # even over every chain at once: one union row per chain
    assert [len(v.runs) for v in pooled if v.label == "union"] == [1, 1]
    weak, strong = chains(runs)
    assert (weak.label, strong.label) == ("shift=synthetic-weak", "shift=synthetic-strong")
    for chain, (d1, _) in zip((weak, strong), SHIFTS.values()):
        assert chain.keys == ["replay"]  # warm-up and shift differ between chains, not within one
        head, rows = table(chain.variants)
        assert head == ["run", "D0 loss (syn-en-a)", f"D1 loss ({d1})", "AVG", "seeds"]
        assert [(r[0], r[-1]) for r in rows] == [("replay=0", "1"), ("replay=0.05", "1"), ("union", "1")]
        assert rows[-1][1:4] == ["2.1000", "2.5000", "2.3000"]  # its own union, no ± over two shifts


def test_chains_are_named_by_what_tells_them_apart(logged):
    weak = logged["synthetic-weak"]
    assert chain_labels([weak]) == ["shift=synthetic-weak"]
    assert chain_labels([weak, logged["synthetic-strong"]]) == ["shift=synthetic-weak", "shift=synthetic-strong"]
    longer = {**weak, "shift.datasets.1.tokens": "4096000"}  # a budget changed on the command line
    assert chain_labels([weak, longer]) == ["shift.datasets.1.tokens=2048000", "shift.datasets.1.tokens=4096000"]
    other = {**weak, "model": "pythia-14m", "model.name": "pythia-14m", "model.n_layer": "6"}
    assert chain_labels([weak, other]) == ["model=tiny", "model=pythia-14m"]
    held_out = {**weak, "shift.datasets.1.val_tokens": "1"}  # a larger eval set: the same chain
    assert len(chains([Run("a", "a", weak, {}, {}), Run("b", "b", held_out, {}, {})])) == 1


@pytest.fixture
def drawn(monkeypatch):
    """path name -> the Figure plots would save there (not saved: drawing PNGs is the slow part)."""
    figures = {}

    def keep(fig, path):
        figures[path.name] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_every_table_panel_and_label_belongs_to_one_chain(logged, drawn, tmp_path):
    from cpt.reports.build import render

    render(Loaded("cpt", "experiment", "sqlite:///x.db", "cpt", _records(logged)), tmp_path)
    for shift, (d1, _) in SHIFTS.items():
        top = [ax.get_title() for ax in drawn[f"curves-shift_{shift}.png"].axes[:2]]
        assert top == ["D0 validation loss (syn-en-a)", f"D1 validation loss ({d1})"]
        (ax,) = drawn[f"tradeoff-shift_{shift}.png"].axes
        labels = ax.get_legend_handles_labels()[1]
        assert sorted(labels) == ["1: replay=0", "2: replay=0.05", "3: union", "Pareto front"]
        assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3"]  # numbers on the points
    md = (tmp_path / "report.md").read_text()
    weak, strong = md.split("## Chain `shift=synthetic-weak`")[1].split("## Chain `shift=synthetic-strong`")
    for part, (d1, _) in zip((weak, strong), SHIFTS.values()):
        assert f"| run | D0 loss (syn-en-a) | D1 loss ({d1}) | AVG | seeds |" in part
        assert "| union | 2.1000 | 2.5000 | 2.3000 | 1 |" in part and "### Forecast" in part
    with open(tmp_path / "table.csv") as f:
        table_rows = list(csv.DictReader(f))
    rows = [(r["chain"], r["run"], r["seeds"]) for r in table_rows]
    assert [r for r in rows if r[1] == "union"] == [("shift=synthetic-weak", "union", "1"),
                                                   ("shift=synthetic-strong", "union", "1")]
    assert {(r["run"], r["kind"]) for r in table_rows} == {("replay=0", "grid"), ("replay=0.05", "grid"),
                                                          ("union", "baseline")}


def test_the_zoom_draws_every_logged_point_in_its_window(logged, drawn, tmp_path):
    from cpt.reports.build import render

    runs = [r for r in _records(logged) if r.params["shift"] == "synthetic-weak"]
    render(Loaded("cpt", "experiment", "sqlite:///x.db", "cpt", runs), tmp_path)
    zoom = drawn["curves.png"].axes[2]  # one chain: today's names; the lower row zooms
    lo, hi = zoom.get_xlim()
    run = runs[0]
    logged_in = [(t, v) for t, v in run.curves["val/syn-en-a/loss"] if lo <= t <= hi]
    (line,) = [ln for ln in zoom.get_lines() if ln.get_label() == "replay=0"]
    drawn_in = [(t, v) for t, v in zip(line.get_xdata(), line.get_ydata()) if lo <= t <= hi]
    assert len(logged_in) > 10 and np.allclose(drawn_in, logged_in)
    assert line.get_marker() == "."  # each eval visible, not only the line between them


def _write(client, experiment_id: str, runs: list[Run]) -> None:
    """Each record as cpt logs it: params, tags, every curve point at step = tokens, finals."""
    ids: dict[str, str] = {}
    for run in runs:
        for p in run.prefixes:
            if p.run_id not in ids:
                ids[p.run_id] = _log(client, experiment_id, p, ids)
        ids[run.run_id] = _log(client, experiment_id, run, ids)


def _log(client, experiment_id: str, run: Run, ids: dict) -> str:
    import time

    from mlflow.entities import Metric, Param

    tags = dict(run.tags)
    if "cpt.prefix_run_id" in tags:  # the MLflow id of the prefix run logged before it
        tags["cpt.prefix_run_id"] = ids[tags["cpt.prefix_run_id"]]
    rid = client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
    ms = int(time.time() * 1000)
    params = [Param(k, v) for k, v in run.params.items()]
    metrics = [Metric(k, v, ms, t) for k, c in run.curves.items() for t, v in c]
    last = max((t for c in run.curves.values() for t, _ in c), default=0)
    metrics += [Metric(k, v, ms, last) for k, v in run.metrics.items()]  # finals at the last step
    for i in range(0, max(len(params), len(metrics)), 100):  # MLflow: at most 100 params a batch
        client.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.mark.slow
def test_an_experiment_of_two_shifts_reports_one_section_per_chain_from_mlflow(logged, drawn, tmp_path):
    from mlflow.tracking import MlflowClient

    from cpt.config.schema import Tracking
    from cpt.reports import write_report
    from cpt.store.tracking import Tracker

    tracking = Tracking(f"sqlite:///{tmp_path}/mlflow.db", "shifts", str(tmp_path / "mlartifacts"))
    tracker = Tracker(tracking)  # the experiment as cpt makes it
    _write(MlflowClient(tracking.uri), tracker.experiment_id, _records(logged))
    md = write_report(tracking, "shifts", tmp_path).read_text()
    assert "6 finished runs" in md and "2 chains (one section each)" in md
    for shift, (d1, _) in SHIFTS.items():
        part = md.split(f"## Chain `shift={shift}`")[1].split("## Chain")[0]
        assert f"D1 loss ({d1})" in part and f"![curves](curves-shift_{shift}.png)" in part
        assert "| union | 2.1000 | 2.5000 | 2.3000 | 1 |" in part
    assert {"curves-shift_synthetic-weak.png", "tradeoff-shift_synthetic-strong.png"} <= set(drawn)
    (rec,) = tracker.records("tags.`cpt.kind` = 'report'")
    assert {"report.md", "table.csv", "runs.csv"} <= set(tracker.artifacts(rec["run_id"]))


def test_merges_draw_their_alpha_curve_and_the_front_counts_merge_and_ema_points(logged, tmp_path):
    """Issue #16's report: θ(α) points of the replay-0 run as one family on the α axis (one
    dotted curve, never pooled), an EMA run and a soup with their own markers, all choices on
    the trade-off; the report says how many of each are on the Pareto front and what they trained."""
    from matplotlib.figure import Figure

    from cpt.reports.analysis import front_note, point_kind

    base = {**logged["synthetic-strong"], "warmup": "0.02"}
    names, t = _names(base), int(base["shift.datasets.0.tokens"])
    runs = []
    for replay, d0, d1 in (("0", 2.60, 2.00), ("0.25", 2.30, 2.20)):
        runs.append(Run(f"r{replay}", f"replay={replay}", {**base, "replay": replay}, {"cpt.kind": "run"},
                        _final(names, d0, d1, t)))
    merge = {**base, "replay": "0", "recipe": "merge", "recipe.name": "merge", "merge.runs": "[]"}
    for alpha, d0, d1 in (("0.0", 2.0, 3.0), ("0.5", 2.2, 2.1), ("1.0", 2.60, 2.00)):  # 0.5 beats replay 0.25
        runs.append(Run(f"m{alpha}", f"merge.alpha={alpha}", {**merge, "merge.alpha": alpha},
                        {"cpt.kind": "run", "cpt.recipe": "merge", "cpt.baseline": "recipe=merge"},
                        _final(names, d0, d1, 0, t)))
    runs.append(Run("soup", "soup", {**merge, "merge.runs": "['a', 'b']", "merge.alpha": ""},
                    {"cpt.kind": "run", "cpt.recipe": "merge", "cpt.baseline": "recipe=merge merge.runs=[a,b]"},
                    _final(names, 2.5, 2.5, 0, t)))
    runs.append(Run("ema", "ema", {**base, "replay": "0", "ema.decay": "0.99", "ema.use": "True"},
                    {"cpt.kind": "run", "cpt.baseline": "ema.decay=0.99 ema.use=true"}, _final(names, 2.25, 2.05, t)))
    keys, vs = variants(runs)
    kinds = {v.label: point_kind(v) for v in vs}
    assert sorted(kinds.values()) == ["ema", "grid", "grid", "merge", "merge", "merge", "soup"], kinds
    assert "merge.alpha" in keys and all(v.runs and len(v.runs) == 1 for v in vs)  # one point per α
    drawn = []
    real = Figure.savefig
    try:
        Figure.savefig = lambda fig, path, **kw: drawn.append(fig)
        _, front = plots.tradeoff(vs, tmp_path / "tradeoff.png")
    finally:
        Figure.savefig = real
    (ax,) = drawn[0].axes
    (curve,) = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert list(curve.get_xdata()) == [2.0, 2.2, 2.6]  # α = 0, 0.5, 1 in order
    # (upstream, downstream): α 0 (2.0, 3.0), α .5 (2.2, 2.1), EMA (2.25, 2.05), replay 0 and α 1
    # (2.6, 2.0, a tie: both kept) are on the front; replay .25 (2.3, 2.2) and the soup are not.
    assert sorted(kinds[vs[i].label] for i in front) == ["ema", "grid", "merge", "merge", "merge"]
    assert {vs[i].runs[0].run_id for i in front} == {"m0.0", "m0.5", "m1.0", "ema", "r0"}
    note = front_note(vs, front)
    assert note == (f"On the front: 3 of 3 merge points (0 tokens trained); 0 of 1 soup points (0 tokens trained); "
                    f"1 of 1 ema points (tokens trained {t:,}); 1 of 2 grid points (tokens trained {t:,})."), note


def test_a_key_an_older_run_lacks_is_not_swept_where_the_others_have_it_off():
    """A run logged before `ema.*` existed beside newer ones with EMA off: not an axis (its labels
    read `replay=0.05`, not `replay=0.05, ema.use=False, ema.decay=None`); EMA on in one is."""
    from cpt.reports.analysis import swept_keys

    old, new = {"replay": "0"}, {"replay": "0.05", "ema.decay": "None", "ema.use": "False"}
    assert swept_keys([old, new]) == ["replay"]
    assert swept_keys([old, new, {"replay": "0", "ema.decay": "0.99", "ema.use": "True"}]) == \
        ["replay", "ema.use", "ema.decay"]


def test_task_scores_get_a_panel_against_the_swept_key(logged, drawn, tmp_path):
    """With harness tasks scored, final_vs_<key>.png has a task-score panel beside the losses."""
    runs = [r for r in _records(logged) if r.params["shift"] == "synthetic-weak"]
    for r, score in zip(runs, (0.61, 0.66, 0.70)):
        r.metrics["final/harness_avg"] = score
    keys, vs = variants(runs)
    plots.final_vs(vs, keys, "replay", tmp_path / "final_vs_replay.png")
    axes = drawn["final_vs_replay.png"].axes
    assert [ax.get_title() for ax in axes] == ["final D0 loss", "final D1 loss", "final AVG",
                                               "final task-score average (harness)"]
    (line, *_) = axes[-1].get_lines()
    assert list(line.get_ydata()) == [0.61, 0.66]  # replay 0, 0.05; the union is a dashed line at 0.70
    plain = [r for r in _records(logged) if r.params["shift"] == "synthetic-weak"]  # no task scores
    plots.final_vs(variants(plain)[1], keys, "replay", tmp_path / "plain.png")
    assert [ax.get_title() for ax in drawn["plain.png"].axes] == ["final D0 loss", "final D1 loss", "final AVG"]
