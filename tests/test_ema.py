"""EMA during a stage (`ema.decay`, `ema.use`) on real tiny runs in this process: decay 0 is the
trained weights, ema.use caches the average, and a stage killed mid-way resumes the average to
the uninterrupted numbers. Stages of 12 steps, one MLflow store for all (its creation costs seconds)."""

from __future__ import annotations

import random
import shutil

import pytest

from cpt.errors import UserError
from cpt.store.prefix_cache import PrefixCache

from conftest import parse
from test_end_to_end import client, runs_of_kind, run_tiny
from test_resume import _crash_with, _history

STEPS = 12


def small(steps: int) -> list[str]:
    """Stages of `steps` steps, evaluated at 0, 8 and the end (no dense window: evaluations
    are most of a tiny run's time, and EMA doubles them)."""
    return [f"shift.datasets.0.tokens={steps * 512}", f"shift.datasets.1.tokens={steps * 512}", "eval.dense_evals=0"]


AVERAGED = small(STEPS) + ["checkpoint.interval_steps=4", "ema.decay=0.8", "ema.use=true"]
NAMES = ("syn-en-a", "syn-en-b")


@pytest.fixture(scope="module")
def store(tmp_path_factory, prepared_root):
    out = tmp_path_factory.mktemp("ema") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    return out


@pytest.fixture(scope="module")
def averaged(store):
    """The uninterrupted run with ema.use (stage 0 cached, stage 1 its own)."""
    cfg, result = run_tiny(store, AVERAGED, name="averaged")
    return cfg, result


def _run_history(out, run_id, key):
    return dict(_history(out, run_id, key))


@pytest.mark.parametrize("override, message", [
    ("ema.decay=1", r"^ema.decay=1.0: allowed null \(off\) or 0 <= ema.decay < 1$"),
    ("ema.decay=-0.5", r"^ema.decay=-0.5: allowed null \(off\) or 0 <= ema.decay < 1$"),
    ("ema.use=true", r"^ema.use=True: allowed false while ema.decay is null$"),
    ("objective=final/syn-en-b/loss_ema", r"^objective=final/syn-en-b/loss_ema: allowed one of the metrics"),
])
def test_bad_ema_is_one_line(override, message):
    with pytest.raises(UserError, match=message):
        parse([override])


def test_ema_enters_the_keys_only_when_on():
    from cpt.plan.identity import prefix_identity, prefix_key, run_key
    from cpt.plan.stages import build_plan

    keys = []
    for o in ([], ["ema.decay=0.9"], ["ema.decay=0.9", "ema.use=true"], ["ema.decay=0.99"]):
        cfg = parse(o + (["objective=final/syn-en-b/loss_ema"] if o else []))  # the objective knows it when on
        stages = build_plan(cfg)
        keys.append((prefix_key(cfg, stages, 0), run_key(cfg, stages)))
        if not o:  # off: the identity is the one it was before EMA existed (cached prefixes still hit)
            assert not any("ema" in s for s in prefix_identity(cfg, stages, len(stages) - 1)["stages"])
    assert len({p for p, _ in keys}) == len({r for _, r in keys}) == 4


@pytest.mark.slow
def test_decay_zero_is_the_trained_weights(store):
    _, res = run_tiny(store, small(4) + ["ema.decay=0"], name="decay0")
    runs = [r for r in runs_of_kind(store, "prefix") + runs_of_kind(store, "run") if r.data.params["ema.decay"] == "0"]
    assert len(runs) == 2  # stage 0 (a prefix of its own: ema.* is in its key) and stage 1
    for r in runs:
        for n in NAMES:
            raw, ema = _run_history(store, r.info.run_id, f"val/{n}/loss"), \
                _run_history(store, r.info.run_id, f"val/{n}/loss_ema")
            assert raw and ema.keys() == raw.keys()
            assert list(ema.values()) == pytest.approx(list(raw.values()), abs=1e-6), n
    for n in NAMES:
        assert res.metrics[f"final/{n}/loss_ema"] == pytest.approx(res.metrics[f"final/{n}/loss"], abs=1e-6)


@pytest.mark.slow
def test_use_caches_the_average_as_the_stage_model(store, averaged):
    from cpt.data.prepare import prepare
    from cpt.model.spec import build_model
    from cpt.train.module import evaluate
    from cpt.train.trainer import val_loaders

    cfg, res = averaged
    for n in NAMES:
        last_raw = _run_history(store, res.run_id, f"val/{n}/loss")
        last_ema = _run_history(store, res.run_id, f"val/{n}/loss_ema")
        end = max(last_ema)
        assert res.metrics[f"final/{n}/loss"] == res.metrics[f"final/{n}/loss_ema"] == last_ema[end]
        assert last_raw[end] != pytest.approx(last_ema[end], abs=1e-4), "decay 0.8 differs from the weights"
    # The cached final weights (the chain's entry, stage 1) are the average: their losses are its.
    (entry,) = [e for e in PrefixCache(store / "cache").entries()
                if e.result["stage"] == 1 and e.result["run_id"] == res.run_id]
    data = prepare(cfg)
    weights = entry.load_weights()
    model = build_model(cfg.model, weights["gpt_neox.embed_in.weight"].shape[0])
    model.load_state_dict(weights)
    got = evaluate(model, val_loaders(cfg, data), "cpu")
    for n in NAMES:
        assert got[n] == pytest.approx(res.metrics[f"final/{n}/loss"], abs=1e-5)


@pytest.mark.slow
def test_killed_stage_resumes_the_average_exactly(store, averaged):
    _, want = averaged
    k = random.randint(5, STEPS - 1)  # after the checkpoint of step 4 (or 8), before the end
    _crash_with(store, AVERAGED + ["force=true"], f"step:{k}:raise")
    _, got = run_tiny(store, AVERAGED + ["force=true"], name="resumed")
    assert got.run_id != want.run_id
    assert client(store).get_run(got.run_id).data.tags["cpt.resumed_from_step"] == str((k - 1) // 4 * 4)
    assert any(k.endswith("loss_ema") for k in want.metrics)
    for key, v in want.metrics.items():
        assert got.metrics[key] == pytest.approx(v, abs=1e-6), f"killed at step {k}: {key}"
    for n in NAMES:
        key = f"val/{n}/loss_ema"
        w, g = _run_history(store, want.run_id, key), _run_history(store, got.run_id, key)
        assert g.keys() == w.keys() and list(g.values()) == pytest.approx(list(w.values()), abs=1e-6), \
            f"killed at step {k}: {key}"
