"""Resume, skip and divergence on real tiny runs in this process (real Lightning, real MLflow).

Crashes here are injected as exceptions (CPT_FAULT=...:raise) at random steps, so the cheap
in-process runs can check every number; tests/test_faults.py does the same with SIGKILL on
real subprocesses.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from cpt import faults
from cpt.store.prefix_cache import PrefixCache
from cpt.errors import TrainingDiverged

from cpt.run.dry_run import describe

from conftest import TINY, TINY_STEPS, parse
from test_end_to_end import client, run_tiny, runs_of_kind

pytestmark = pytest.mark.slow

CKPT = ["checkpoint.interval_steps=5", "checkpoint.keep_last=2"]
T = TINY_STEPS  # steps per stage


def _fresh(tmp_path_factory, prepared_root, name):
    out = tmp_path_factory.mktemp(name) / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, prepared_root):
    out = _fresh(tmp_path_factory, prepared_root, "baseline")
    cfg, result = run_tiny(out, CKPT, name="baseline")
    return out, cfg, result


def _crash_with(out, overrides, spec):
    os.environ[faults.ENV] = spec
    faults.reset()
    try:
        with pytest.raises(faults.InjectedFault):
            run_tiny(out, overrides, name="crashing")
    finally:
        del os.environ[faults.ENV]


def _crash(out, spec):
    _crash_with(out, CKPT, spec)


def _history(out, run_id, key):
    return [(h.step, h.value) for h in sorted(client(out).get_metric_history(run_id, key), key=lambda h: h.step)]


def test_crashes_mid_prefix_and_mid_stage_resume_to_the_same_numbers(baseline, tmp_path_factory, prepared_root):
    base_out, _, base = baseline
    out = _fresh(tmp_path_factory, prepared_root, "resumed")
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    k1 = rng.randint(1, T - 1)  # a random step of stage 0 (the prefix)
    _crash(out, f"step:{k1}:raise")
    done0 = (k1 - 1) // 5 * 5  # its last checkpoint: the one of step s is written before step s + 1
    prefix_id = runs_of_kind(out, "prefix")[0].info.run_id
    k2 = (T - done0) + rng.randint(1, T - 1)  # the rest of stage 0, then a random step of stage 1
    _crash(out, f"step:{k2}:raise")
    run_id = runs_of_kind(out, "run")[0].info.run_id
    ckpts = list((out / "checkpoints").iterdir())
    assert [p.name[:4] for p in ckpts] == ["run-"], f"seed {seed}: prefix checkpoints deleted once cached"
    done1 = (k2 - (T - done0) - 1) // 5 * 5
    plan = describe(parse(TINY + CKPT, out), {})
    assert ("[resumes from its checkpoint at step" in plan) == (done1 > 0) and "[cached" in plan, plan

    _, resumed = run_tiny(out, CKPT, name="resumed")
    msg = f"seed {seed}: killed at step {k1} of stage 0, then at step {k2 - (T - done0)} of stage 1"
    assert resumed.run_id == run_id, msg  # the same MLflow run, continued
    for k, v in base.metrics.items():
        assert resumed.metrics[k] == pytest.approx(v, abs=1e-6), f"{msg}: {k}"
    assert [r.info.run_id for r in runs_of_kind(out, "prefix")] == [prefix_id]
    assert len(runs_of_kind(out, "run")) == 1
    for r in runs_of_kind(out, "prefix") + runs_of_kind(out, "run"):
        assert r.info.status == "FINISHED"
    # Every step exactly once in the continued runs, with the uninterrupted run's values.
    base_prefix = runs_of_kind(base_out, "prefix")[0].info.run_id
    for want_id, got_id in ((base.run_id, run_id), (base_prefix, prefix_id)):
        for key in ("train/loss", "train/lr", "val/syn-en-a/loss", "val/syn-en-b/loss"):
            want, got = _history(base_out, want_id, key), _history(out, got_id, key)
            assert [s for s, _ in got] == [s for s, _ in want], f"{msg}: {key} steps"
            assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-6), f"{msg}: {key}"
    assert not list((out / "checkpoints").iterdir())  # deleted once the run finished
    # The cached stage-0 weights are those of the uninterrupted run.
    # (stage 0's entry; the run's final weights are an entry of their own, keyed by the whole chain)
    (entry,) = [e for e in PrefixCache(out / "cache").entries() if e.result["stage"] == 0]
    (base_entry,) = [e for e in PrefixCache(base_out / "cache").entries() if e.result["stage"] == 0]
    w, bw = entry.load_weights(), base_entry.load_weights()
    assert max((w[k] - bw[k]).abs().max().item() for k in w) < 1e-6


def test_finished_run_is_skipped_and_force_trains_it_again(baseline):
    out, _, base = baseline
    assert not list((out / "checkpoints").glob("*/step-*"))  # a finished stage keeps no checkpoints
    _, again = run_tiny(out, CKPT, name="again")
    assert again.skipped and again.run_id == base.run_id
    assert again.metrics["final/avg_loss"] == base.metrics["final/avg_loss"]
    assert len(runs_of_kind(out, "run")) == 1
    _, forced = run_tiny(out, CKPT + ["force=true"], name="forced")
    assert not forced.skipped and forced.run_id != base.run_id
    assert forced.metrics["final/avg_loss"] == pytest.approx(base.metrics["final/avg_loss"], abs=1e-6)
    runs = runs_of_kind(out, "run")
    assert len(runs) == 2 and {r.data.tags["cpt.identity.run_key"] for r in runs} == {runs[0].data.tags["cpt.run_key"]}


def test_nan_loss_stops_the_run_naming_the_step_and_caches_nothing(baseline):
    out = baseline[0]  # its MLflow store exists already (creating one costs seconds)
    entries = PrefixCache(out / "cache").entries()
    with pytest.raises(TrainingDiverged) as e:
        run_tiny(out, CKPT + ["pretrain.lr.max=1e30"])  # AdamW's decoupled decay at lr 1e30 overflows
    msg = str(e.value)
    assert "loss is nan at step " in msg and "marked FAILED" in msg and "\n" not in msg and e.value.exit_code == 3
    (failed,) = [r for r in runs_of_kind(out, "prefix") if r.info.status == "FAILED"]
    assert failed.info.run_id in msg and failed.data.params["pretrain.lr.max"] == "1e+30"
    assert PrefixCache(out / "cache").entries() == entries  # nothing cached
    assert all(r.info.status == "FINISHED" for r in runs_of_kind(out, "run"))


def test_own_checkpoint_wins_over_model_init(baseline, tmp_path):
    """model.init is stage 0; a crash in stage 1 resumes from stage 1's checkpoint, not from init."""
    from test_pretrained import save_tiny_neox

    out = baseline[0]
    init = [f"model.init={save_tiny_neox(tmp_path / 'init')}", "shift.datasets.1.tokens=6144"]  # 12 steps
    k = random.randint(6, 9)  # after the checkpoint of step 5, before the one of step 10
    _crash_with(out, CKPT + init, f"step:{k}:raise")
    _, resumed = run_tiny(out, CKPT + init)
    tags = client(out).get_run(resumed.run_id).data.tags
    assert tags["cpt.resumed_from_step"] == "5", f"killed at step {k}"
    _, fresh = run_tiny(out, CKPT + init + ["force=true"])  # the same run, uninterrupted
    assert fresh.run_id != resumed.run_id
    for key, v in fresh.metrics.items():
        assert resumed.metrics[key] == pytest.approx(v, abs=1e-6), f"killed at step {k}: {key}"


def test_crash_after_the_anneal_start_keeps_the_pre_anneal_copy(baseline, tmp_path, prepared_root):
    """An infinite schedule: stage 0 anneals from step 17 (warm-up 2 + ceil(0.6·24)); its copy
    before the anneal (what stage 1 continues from) must survive a crash at step 21-23."""
    out = baseline[0]
    inf = CKPT + ["schedule=infinite-cosine", "schedule.cooldown=0.4", "schedule.constant_until=0.6"]
    k = random.randint(21, T - 1)  # after the checkpoint of step 20, past the anneal start
    _crash_with(out, inf, f"step:{k}:raise")
    _, got = run_tiny(out, inf)
    ref = tmp_path / "reference"  # the uninterrupted run: its own cache, the same MLflow store
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, ref / sub)
    _, want = run_tiny(ref, inf + [f"tracking.uri=sqlite:///{out}/mlflow.db", "force=true"])
    for key, v in want.metrics.items():
        assert got.metrics[key] == pytest.approx(v, abs=1e-6), f"killed at step {k}: {key}"
    (entry,) = [e for e in PrefixCache(out / "cache").entries() if e.pre_anneal.exists() and e.result["stage"] == 0]
    (ref_entry,) = [e for e in PrefixCache(ref / "cache").entries() if e.result["stage"] == 0]
    w, rw = entry.load_weights(entry.pre_anneal), ref_entry.load_weights(ref_entry.pre_anneal)
    assert max((w[n] - rw[n]).abs().max().item() for n in w) < 1e-6
