"""Tiny real runs: Hydra-composed config, real Lightning Trainer, real MLflow SQLite store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from cpt.config.schema import parse as parse_cfg
from cpt.run.experiment import RunContext, run
from cpt.plan.schedules import lr_at
from cpt.store.tracking import flatten

from conftest import TINY, TINY_STEPS, compose, hydra_multirun, run_cli

pytestmark = pytest.mark.slow


def run_tiny(out, overrides=(), name="test"):
    dc = compose(TINY + list(overrides), out)
    cfg = parse_cfg(dc)
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(dc, [k for k in dc if k != "hydra"]), resolve=True)
    choices = {g: dc.hydra.runtime.choices.get(g) for g in ("model", "shift", "schedule", "recipe", "trainer", "tracking")}
    ctx = RunContext(choices=choices, params=flatten(resolved), run_name=name,
                     resolved_yaml=OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return cfg, run(cfg, ctx, say=lambda *_: None)


def client(out):
    return MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")


def runs_of_kind(out, kind):
    c = client(out)
    exp = c.get_experiment_by_name("cpt")
    return c.search_runs([exp.experiment_id], f"tags.`cpt.kind` = '{kind}'")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, prepared_root):
    """Two runs in one process differing in lr.max: the second must reuse stage 0."""
    import shutil

    out = tmp_path_factory.mktemp("e2e") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    cfg, first = run_tiny(out, ["lr.max=6e-4"], name="first")
    _, second = run_tiny(out, ["lr.max=1.5e-4"], name="second")
    return out, cfg, first, second


def test_stage0_trained_once_in_one_process(two_runs):
    out, _, first, second = two_runs
    assert first.prefix_hits == [False] and second.prefix_hits == [True]
    assert len(runs_of_kind(out, "prefix")) == 1
    assert len(runs_of_kind(out, "run")) == 2


def test_mlflow_holds_params_tags_and_final_metrics(two_runs):
    out, cfg, first, _ = two_runs
    r = client(out).get_run(first.run_id)
    p = r.data.params
    assert p["lr.max"] == "0.0006" and p["warmup"] == "0.1" and p["replay"] == "0.0"
    assert p["model"] == "tiny" and p["shift"] == "synthetic-weak" and p["schedule"] == "cosine"
    assert p["shift.datasets.1.name"] == "syn-en-b"
    m = r.data.metrics
    for key in ("final/syn-en-a/loss", "final/syn-en-b/loss", "final/upstream_loss", "final/downstream_loss",
                "final/avg_loss", "forgetting", "adaptation", "compute/tokens", "compute/flops",
                "compute/tokens_with_prefix"):
        assert key in m, key
    assert m["final/avg_loss"] == pytest.approx((m["final/upstream_loss"] + m["final/downstream_loss"]) / 2)
    assert m["compute/tokens"] == TINY_STEPS * 512
    assert m["compute/tokens_with_prefix"] == 2 * TINY_STEPS * 512
    t = r.data.tags
    assert t["cpt.kind"] == "run" and t["cpt.recipe"] == "cpt" and t["cpt.prefix_key"]
    assert t["cpt.prefix_run_id"] == runs_of_kind(out, "prefix")[0].info.run_id
    for tag in ("cpt.git_commit", "cpt.version", "torch.version", "lightning.version"):
        assert t[tag]
    assert "config.yaml" in [a.path for a in client(out).list_artifacts(first.run_id)]


def test_logged_lr_is_the_schedule_at_every_step(two_runs):
    out, cfg, first, _ = two_runs
    offset = TINY_STEPS * 512  # the continual stage starts where stage 0 ended, in tokens
    hist = client(out).get_metric_history(first.run_id, "train/lr")
    got = {h.step: h.value for h in hist}
    from cpt.plan.stages import build_plan

    stage = build_plan(cfg)[1]
    assert sorted(got) == [offset + s * 512 for s in range(TINY_STEPS)]
    for s in range(TINY_STEPS):
        assert got[offset + s * 512] == pytest.approx(lr_at(s, TINY_STEPS, stage.schedule), rel=1e-9, abs=1e-15)
    assert got[offset] == 0.0  # warm-up restarts from 0: re-warming


def test_validation_of_every_dataset_from_step_0(two_runs):
    out, _, first, _ = two_runs
    offset = TINY_STEPS * 512
    for name in ("syn-en-a", "syn-en-b"):
        steps = [h.step for h in client(out).get_metric_history(first.run_id, f"val/{name}/loss")]
        assert min(steps) == offset and max(steps) == 2 * offset
        assert len(steps) >= 4
    prefix = runs_of_kind(out, "prefix")[0]
    p_steps = [h.step for h in client(out).get_metric_history(prefix.info.run_id, "val/syn-en-a/loss")]
    assert min(p_steps) == 0 and max(p_steps) == offset


def test_forgetting_and_adaptation_follow_their_definition(two_runs):
    out, _, first, _ = two_runs
    m = client(out).get_run(first.run_id).data.metrics
    prefix = runs_of_kind(out, "prefix")[0]
    d0_end_of_stage0 = client(out).get_metric_history(prefix.info.run_id, "val/syn-en-a/loss")[-1].value
    assert m["forgetting"] == pytest.approx(m["final/syn-en-a/loss"] - d0_end_of_stage0)
    d1_hist = sorted(client(out).get_metric_history(first.run_id, "val/syn-en-b/loss"), key=lambda h: h.step)
    assert m["adaptation"] == pytest.approx(d1_hist[0].value - m["final/syn-en-b/loss"])


def test_multirun_and_second_process_train_stage0_once(out):
    tiny = TINY + [f"paths.output_dir={out}"]
    said = hydra_multirun(["-m", "lr.max=1e-4,2e-4", *tiny])  # in this process; the second one is its own
    assert "cached prefix" in said  # the second point says it reused stage 0
    assert "sweep " in said and "avg" in said  # the grid table at the end
    res2 = run_cli(["lr.max=3e-4", *tiny])
    assert res2.returncode == 0, res2.stderr[-2000:]
    assert "cached prefix" in res2.stdout and "mlflow ui --backend-store-uri" in res2.stdout
    assert len(runs_of_kind(out, "prefix")) == 1
    runs = runs_of_kind(out, "run")
    assert sorted(r.data.params["lr.max"] for r in runs) == ["0.0001", "0.0002", "0.0003"]
    assert len({r.data.tags["cpt.sweep_id"] for r in runs if r.data.tags["cpt.sweep_id"]}) == 1
