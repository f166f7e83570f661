"""Tiny real runs of every recipe and of a three-dataset chain, checked in the MLflow store;
and train/replay_fraction recomputed from the sequence ids a real Trainer consumed."""

from __future__ import annotations

import shutil

import lightning as L
import pytest

from cpt.data.mixture import assign
from cpt.data.prepare import prepare
from cpt.model.spec import build_model
from cpt.plan.stages import build_plan
from cpt.train.trainer import train_stage

from conftest import TINY, TINY_STEPS, _tiny_budgets, parse
from test_end_to_end import client, run_tiny, runs_of_kind

pytestmark = pytest.mark.slow

T = TINY_STEPS * 512  # tokens of one tiny stage
FINALS = {"final/syn-en-a/loss", "final/syn-en-b/loss", "final/upstream_loss", "final/downstream_loss",
          "final/avg_loss"}
THREE = ["shift=synthetic-strong-3", "replay=0.25", *_tiny_budgets("synthetic-strong-3")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prepared_root):
    """Every recipe of the weak shift, then two three-dataset chains, in one output dir."""
    out = tmp_path_factory.mktemp("recipes") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    r = {}
    _, r["cpt"] = run_tiny(out, ["replay=0.25"], name="cpt")
    _, r["union"] = run_tiny(out, ["recipe=union"], name="union")
    _, r["union2"] = run_tiny(out, ["recipe=union", "lr.max=6e-4", "warmup=0.3", "replay=0.05"], name="union2")
    _, r["scratch"] = run_tiny(out, ["recipe=scratch"], name="scratch")
    _, r["upstream-only"] = run_tiny(out, ["recipe=upstream-only"], name="upstream-only")
    _, r["three"] = run_tiny(out, THREE, name="three")
    _, r["three-other-d2"] = run_tiny(out, THREE + ["shift.datasets.2.source.split=1"], name="three-other-d2")
    return out, r


def metrics(out, result):
    return client(out).get_run(result.run_id).data.metrics


def history(out, run_id, key):
    return sorted(client(out).get_metric_history(run_id, key), key=lambda h: h.step)


def prefix_runs(out):
    return {(p.data.tags["cpt.prefix_key"]): p for p in runs_of_kind(out, "prefix")}


def stage0(out, runs):
    return prefix_runs(out)[client(out).get_run(runs["cpt"].run_id).data.tags["cpt.reference_key"]]


def test_every_recipe_logs_the_same_final_metrics(runs):
    out, r = runs
    for name in ("cpt", "union", "scratch", "upstream-only"):
        m = metrics(out, r[name])
        assert FINALS <= set(m), name
        for key in ("forgetting", "forgetting/syn-en-a", "adaptation", "compute/tokens", "compute/tokens_with_prefix"):
            assert key in m, (name, key)
        assert m["final/avg_loss"] == pytest.approx((m["final/upstream_loss"] + m["final/downstream_loss"]) / 2)
        assert client(out).get_run(r[name].run_id).data.tags["cpt.recipe"] == name
        assert client(out).get_run(r[name].run_id).data.params["recipe"] == name


def test_stage0_is_trained_once_and_is_every_baselines_reference(runs):
    out, r = runs
    s0 = stage0(out, r)
    assert [p.data.tags["cpt.stage"] for p in runs_of_kind(out, "prefix")].count("0") == 3  # D0, union, scratch
    for name in ("union", "scratch", "upstream-only", "three"):
        assert r[name].prefix_hits[0] is True, name
        assert client(out).get_run(r[name].run_id).data.tags["cpt.reference_key"] == s0.data.tags["cpt.prefix_key"]
    d0_end = history(out, s0.info.run_id, "val/syn-en-a/loss")[-1].value
    d1_s0 = history(out, s0.info.run_id, "val/syn-en-b/loss")[-1].value
    for name in ("cpt", "union", "scratch", "upstream-only"):  # docs/metrics.md / 2403.08763, two datasets
        m = metrics(out, r[name])
        assert m["forgetting"] == m["forgetting/syn-en-a"] == pytest.approx(m["final/syn-en-a/loss"] - d0_end)
    for name in ("union", "scratch"):  # measured from where the chain's D1 stage starts
        m = metrics(out, r[name])
        assert m["adaptation"] == pytest.approx(d1_s0 - m["final/syn-en-b/loss"])


def test_union_is_trained_once_for_any_continual_knobs(runs):
    out, r = runs
    assert r["union"].prefix_hits == [True, False] and r["union2"].prefix_hits == [True, True]
    tags = client(out).get_run(r["union"].run_id).data.tags
    assert tags["cpt.run_key"] == client(out).get_run(r["union2"].run_id).data.tags["cpt.run_key"]
    union = prefix_runs(out)[tags["cpt.prefix_key"]]
    m, m2 = metrics(out, r["union"]), metrics(out, r["union2"])
    assert {k: m[k] for k in FINALS} == {k: m2[k] for k in FINALS}
    assert m["compute/tokens"] == m["compute/tokens_with_prefix"] == 2 * T
    # one stage of 48 steps from step 0, half of every batch from each dataset
    lr = history(out, union.info.run_id, "train/lr")
    assert [h.step for h in lr] == [s * 512 for s in range(2 * TINY_STEPS)]
    assert {h.value for h in history(out, union.info.run_id, "train/replay_fraction")} == {0.5}
    assert m["final/syn-en-b/loss"] == history(out, union.info.run_id, "val/syn-en-b/loss")[-1].value


def test_scratch_and_upstream_only(runs):
    out, r = runs
    m = metrics(out, r["scratch"])
    assert m["compute/tokens"] == m["compute/tokens_with_prefix"] == T
    scratch = prefix_runs(out)[client(out).get_run(r["scratch"].run_id).data.tags["cpt.prefix_key"]]
    assert history(out, scratch.info.run_id, "train/lr")[0].step == 0  # from scratch: its own axis
    assert {h.value for h in history(out, scratch.info.run_id, "train/replay_fraction")} == {0.0}
    up = metrics(out, r["upstream-only"])
    s0 = stage0(out, r)
    assert r["upstream-only"].prefix_hits == [True]
    for n in ("syn-en-a", "syn-en-b"):
        assert up[f"final/{n}/loss"] == history(out, s0.info.run_id, f"val/{n}/loss")[-1].value
    assert up["forgetting"] == 0.0 and up["adaptation"] == 0.0
    assert up["compute/tokens"] == 0 and up["compute/tokens_with_prefix"] == T


def test_cpt_replay_fraction_is_logged_exactly(runs):
    out, r = runs
    hist = history(out, r["cpt"].run_id, "train/replay_fraction")
    assert len(hist) == TINY_STEPS and {h.value for h in hist} == {0.25}  # 1 of every 4 sequences


def test_three_dataset_chain(runs):
    out, r = runs
    names = ("syn-en-a", "syn-en-b", "syn-de")
    # stages 0..1: the two-dataset cpt run's final weights, kept as the entry of its whole chain
    assert r["three"].prefix_hits == [True, True]
    assert r["three-other-d2"].prefix_hits == [True, True]  # stages 0..1 shared: only D2 differs
    m = metrics(out, r["three"])
    assert {f"final/{n}/loss" for n in names} <= set(m)
    assert m["final/upstream_loss"] == pytest.approx((m["final/syn-en-a/loss"] + m["final/syn-en-b/loss"]) / 2)
    assert m["final/downstream_loss"] == m["final/syn-de/loss"]
    tags = client(out).get_run(r["three"].run_id).data.tags
    stage1 = client(out).get_run(tags["cpt.prefix_run_id"])  # the run that trained the entry of stages 0..1
    assert stage1.data.tags["cpt.stage"] == "1"
    s0 = stage0(out, r)
    end = {"syn-en-a": history(out, s0.info.run_id, "val/syn-en-a/loss")[-1].value,
           "syn-en-b": history(out, stage1.info.run_id, "val/syn-en-b/loss")[-1].value}
    for n, v in end.items():  # each earlier dataset against the end of the stage that trained on it
        assert m[f"forgetting/{n}"] == pytest.approx(m[f"final/{n}/loss"] - v)
    assert m["forgetting"] == pytest.approx((m["forgetting/syn-en-a"] + m["forgetting/syn-en-b"]) / 2)
    assert m["compute/tokens"] == T and m["compute/tokens_with_prefix"] == 3 * T
    for n in names:  # every dataset evaluated from step 0 of the last stage, on the chain's axis
        assert history(out, r["three"].run_id, f"val/{n}/loss")[0].step == 2 * T
    # stages 1 and 2 each replay a quarter of their sequences
    assert history(out, stage1.info.run_id, "train/replay_fraction")[-1].value == 0.25
    assert history(out, r["three"].run_id, "train/replay_fraction")[-1].value == 0.25


class ConsumedIds(L.Callback):
    """Records the sequence ids of every batch the model trained on."""

    def __init__(self):
        self.ids: list[int] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.ids.extend(int(i) for i in batch[2])


def test_replay_fraction_is_counted_from_the_consumed_sequence_ids(out):
    cfg = parse(TINY + ["replay=0.3", "shift=synthetic-3split", *_tiny_budgets("synthetic-3split")], out)
    data = prepare(cfg)
    stage = build_plan(cfg)[2]
    logged, ids = {}, ConsumedIds()
    model = build_model(cfg.model, cfg.model.padded_vocab(data.vocab_size))
    train_stage(cfg, stage, model, data, lambda m, step: logged.update(
        {step: m["train/replay_fraction"]} if "train/replay_fraction" in m else {}), 0, "test", callbacks=[ids])
    n = TINY_STEPS * cfg.sequences_per_batch
    assert ids.ids == list(range(n))  # every sequence of the stage, once, in order
    assert sorted(logged) == [s * 512 for s in range(TINY_STEPS)]
    for step, value in logged.items():
        consumed = ids.ids[: (step // 512 + 1) * cfg.sequences_per_batch]
        replayed = sum(assign(i, stage.replay, stage.replay_weights)[0] >= 0 for i in consumed)
        assert value == replayed / len(consumed)
    assert logged[(TINY_STEPS - 1) * 512] == int(0.3 * n) / n  # floor(96 · 0.3) = 28 of 96
