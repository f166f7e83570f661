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
