"""A tiny three-stage chain under an infinite schedule: real Hydra, Lightning, MLflow, cache.

The third dataset comes from a test-only shift given as an override (D2: another split of D1's
distribution, as 2403.08763's three SlimPajama splits). With T = 24 steps, warm-up 0.1 (T_w = 2),
cooldown 0.4 (T_cd = 9.6) and constant_until 0.6 (T_c = 14.4): stage 0 anneals from
t = 2 + ceil(14.4) = 17, stages 1 and 2 (no warm-up) from t = ceil(14.4) = 15.
"""

from __future__ import annotations

import pytest
import torch

from cpt.store.prefix_cache import PrefixCache
from cpt.plan.identity import prefix_key
from cpt.plan.stages import build_plan
from cpt.plan.schedules import lr_at

from conftest import CONF, TINY_STEPS
from test_end_to_end import client, run_tiny, runs_of_kind

pytestmark = pytest.mark.slow



def _three_split() -> str:
    """synthetic-weak's two datasets (so their prepared shards are reused) and a third: another
    split of D1's distribution."""
    import yaml

    d0, d1 = yaml.safe_load((CONF / "shift" / "synthetic-weak.yaml").read_text())["datasets"]
    d2 = {**d1, "name": "syn-en-c", "source": {**d1["source"], "topic_weights": list(d1["source"]["topic_weights"]),
                                                "split": 2}}  # a copy: no YAML alias in the override
    tiny = {"tokens": TINY_STEPS * 512, "val_tokens": 1024}
    items = [{**d, **tiny} for d in (d0, d1, d2)]
    return "shift.datasets=" + yaml.safe_dump(items, default_flow_style=True, width=10_000).strip()


THREE_SPLIT = [_three_split(), "schedule=infinite-cosine", "schedule.cooldown=0.4", "schedule.constant_until=0.6"]
ETA_CONST = (3e-4 + 3e-5) / 2  # 1.65e-4


@pytest.fixture(scope="module")
def chain(tmp_path_factory, prepared_root):
    import shutil

    out = tmp_path_factory.mktemp("inf") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    cfg, result = run_tiny(out, THREE_SPLIT, name="infinite")
    stages = build_plan(cfg)
    prefixes = sorted(runs_of_kind(out, "prefix"), key=lambda r: int(r.data.tags["cpt.stage"]))
    return out, cfg, stages, result, prefixes


def lr_history(out, run_id):
    return {h.step: h.value for h in client(out).get_metric_history(run_id, "train/lr")}


def test_logged_lr_never_rewarms_at_stage_boundaries(chain):
    out, cfg, stages, result, prefixes = chain
    assert [p.data.tags["cpt.stage"] for p in prefixes] == ["0", "1"]
    runs = [p.info.run_id for p in prefixes] + [result.run_id]
    starts = [0, 17 * 512, (17 + 15) * 512]  # each stage starts where the previous one's anneal branches off
    for stage, run_id, start in zip(stages, runs, starts):
        got = lr_history(out, run_id)
        assert sorted(got) == [start + t * 512 for t in range(TINY_STEPS)]  # every step, in chain tokens
        for t in range(TINY_STEPS):  # what the optimizer used is the schedule, step by step
            assert got[start + t * 512] == pytest.approx(lr_at(t, TINY_STEPS, stage.schedule), rel=1e-9)
    first, second, third = (lr_history(out, r) for r in runs)
    assert first[0] == 0.0 and max(first.values()) == pytest.approx(3e-4)  # stage 0: the only warm-up
    assert first[16 * 512] == pytest.approx(ETA_CONST)  # its last step before the anneal
    assert first[23 * 512] < ETA_CONST  # ... which then ran, for the evaluated model
    for later, start in ((second, starts[1]), (third, starts[2])):
        assert later[start] == pytest.approx(ETA_CONST)  # picks up at η_const: no re-warm
        assert max(later.values()) == pytest.approx(ETA_CONST)
        assert later[start + 23 * 512] < ETA_CONST  # and anneals at its end


def test_later_stages_continue_from_the_pre_anneal_weights(chain):
    out, cfg, stages, result, prefixes = chain
    cache = PrefixCache(out / "cache")
    e0, e1 = (cache.get(prefix_key(cfg, stages, k)) for k in (0, 1))
    # the checkpoint each stage was started from, as recorded on its MLflow run
    assert prefixes[0].data.tags["cpt.init_weights"] == ""
    assert prefixes[1].data.tags["cpt.init_weights"] == str(e0.pre_anneal)
    assert client(out).get_run(result.run_id).data.tags["cpt.init_weights"] == str(e1.pre_anneal)
    for e, anneal in ((e0, 17), (e1, 15)):
        assert e.result["pre_anneal_step"] == anneal
        pre, final = e.load_weights(e.pre_anneal), e.load_weights()
        assert pre.keys() == final.keys()
        assert any(not torch.equal(pre[k], final[k]) for k in pre)  # the anneal moved the weights
        assert e.result["val_pre_anneal"] != e.result["val"]
    # what stage 1 measured at its step 0 is the pre-anneal model of stage 0, not the annealed one
    assert e1.result["val_at_start"] == pytest.approx(e0.result["val_pre_anneal"], rel=1e-6)
    assert e1.result["val_at_start"]["syn-en-a"] != pytest.approx(e0.result["val"]["syn-en-a"], rel=1e-6)
    # the annealed model is the one evaluated: the run's forgetting compares against it
    assert result.metrics["forgetting"] == pytest.approx(
        ((result.metrics["final/syn-en-a/loss"] - e0.result["val"]["syn-en-a"])
         + (result.metrics["final/syn-en-b/loss"] - e1.result["val"]["syn-en-b"])) / 2)
