"""Stability-gap metrics (cpt/plan/gap.py) on curves of known numbers."""

from __future__ import annotations

import math

import pytest

from cpt.plan.gap import gap, gap_metrics


def test_flat_and_decreasing_curves_have_no_gap():
    for curve in ([(0, 3.0), (100, 3.0), (200, 3.0)], [(0, 3.0), (100, 2.9), (200, 2.5)]):
        assert gap(curve) == {"depth": 0.0, "peak_tokens": 0, "recovery_tokens": 0}


def test_a_spike_that_recovers():
    curve = [(0, 3.0), (64, 3.2), (128, 3.5), (256, 3.1), (512, 2.9), (1024, 2.7)]
    g = gap(curve)
    assert g["depth"] == pytest.approx(0.5)
    assert g["peak_tokens"] == 128
    assert g["recovery_tokens"] == 512  # 3.1 at 256 is still above the start's 3.0


def test_back_exactly_at_the_start_counts_as_recovered():
    assert gap([(0, 3.0), (10, 3.4), (20, 3.0)])["recovery_tokens"] == 10 * 2


def test_a_spike_that_never_recovers():
    g = gap([(0, 2.0), (100, 2.6), (200, 2.4), (300, 2.2)])
    assert g["depth"] == pytest.approx(0.6) and g["peak_tokens"] == 100
    assert g["recovery_tokens"] is None


def test_plateau_peak_counts_from_its_first_point_and_tokens_from_the_first_point():
    g = gap([(1000, 1.0), (1100, 1.5), (1200, 1.5), (1300, 0.9)])
    assert g == {"depth": pytest.approx(0.5), "peak_tokens": 100, "recovery_tokens": 300}


def test_a_diverged_eval_is_skipped_but_the_start_must_be_finite():
    assert gap([(0, 3.0), (10, math.nan), (20, 3.2), (30, 2.9)])["recovery_tokens"] == 30
    with pytest.raises(ValueError):
        gap([(0, math.nan), (10, 3.0)])
    with pytest.raises(ValueError):
        gap([])
    with pytest.raises(ValueError):
        gap([(10, 3.0), (0, 3.1)])


def test_metric_keys_and_an_absent_recovery():
    recovered = gap_metrics("syn-en-a", [(0, 3.0), (64, 3.3), (128, 2.9)])
    assert recovered == {"gap/syn-en-a/depth": pytest.approx(0.3), "gap/syn-en-a/peak_tokens": 64,
                         "gap/syn-en-a/recovery_tokens": 128}
    never = gap_metrics("syn-en-b", [(0, 3.0), (64, 3.3)])
    assert set(never) == {"gap/syn-en-b/depth", "gap/syn-en-b/peak_tokens"}


def test_a_stage_gap_from_its_evals_by_step_for_every_dataset():
    from cpt.plan.gap import stage_gap_metrics, staged

    evals = {0: {"a": 3.0, "b": 5.0}, 2: {"a": 3.4, "b": 4.0}, 4: {"a": 2.9, "b": 3.0}}
    got = stage_gap_metrics(evals, 512)
    assert got == {"gap/a/depth": pytest.approx(0.4), "gap/a/peak_tokens": 1024, "gap/a/recovery_tokens": 2048,
                   "gap/b/depth": 0.0, "gap/b/peak_tokens": 0, "gap/b/recovery_tokens": 0}
    assert stage_gap_metrics({2: {"a": 1.0}}, 512) == {}  # no eval at the start: no gap
    assert set(staged(got, 1)) == {f"gap/stage1/{d}/{k}" for d in "ab" for k in ("depth", "peak_tokens", "recovery_tokens")}


def test_a_report_fills_the_gap_of_a_run_logged_without_it():
    from cpt.reports.load import Run
    from cpt.reports.stability import fill_gaps, gap_table
    from cpt.reports.analysis import variants

    params = {"shift.datasets.0.name": "a", "shift.datasets.1.name": "b", "recipe": "cpt", "lr.max": "1"}
    curves = {"val/a/loss": [(1000, 2.0), (1512, 2.5), (2024, 1.9)], "val/b/loss": [(1000, 4.0), (2024, 3.0)]}
    old = Run("r1", "x", params, {"cpt.prefix_run_id": "p"}, {"final/a/loss": 1.9}, curves)
    logged = Run("r2", "y", {**params, "lr.max": "2"}, {"cpt.prefix_run_id": "p"}, {"gap/a/depth": 9.0}, curves)
    base = Run("r3", "u", {**params, "recipe": "union"}, {"cpt.prefix_run_id": "p"}, {}, curves)
    fill_gaps([old, logged, base])
    assert old.metrics["gap/a/depth"] == pytest.approx(0.5) and old.metrics["gap/a/recovery_tokens"] == 1024
    assert old.metrics["gap/b/depth"] == 0.0
    assert logged.metrics == {"gap/a/depth": 9.0} and base.metrics == {}  # logged: kept; a baseline has none
    head, rows = gap_table(variants([old, logged, base])[1])
    assert head[:4] == ["run", "D0 depth", "D0 peak tokens", "D0 recovery tokens"]
    assert [r[:2] for r in rows] == [["lr.max=1", "0.5000"], ["lr.max=2", "9.0000"]]


def test_a_run_logs_the_gap_of_every_continual_stage_earlier_ones_by_stage():
    from types import SimpleNamespace as NS

    from cpt.run.experiment import _gaps

    stage = lambda i, scratch: NS(stage=NS(index=i, from_scratch=scratch))
    plan = NS(cached=[stage(0, True), stage(1, False)], own=NS(from_scratch=False))
    entries = [NS(result={}), NS(result={"gap": {"gap/a/depth": 0.2}})]
    st = NS(metrics=NS(evals={0: {"a": 3.0}, 1: {"a": 3.5}, 2: {"a": 2.0}}))
    got = _gaps(plan, entries, st, 10)
    assert got == {"gap/stage1/a/depth": 0.2, "gap/a/depth": 0.5, "gap/a/peak_tokens": 10, "gap/a/recovery_tokens": 20}
    assert _gaps(NS(cached=plan.cached[:1], own=None), entries[:1], None, 10) == {}  # upstream-only: none
