"""Config composition of every group option, and validation of bad input."""

from __future__ import annotations

import pytest

from cpt.config.schema import GROUPS
from cpt.errors import UserError

from conftest import CONF, parse, run_cli
from test_tracking_reliability import _free_port

DOWN = _free_port()  # a port nothing listens on: tracking=server pointing at no server

OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


# Options with required keys of their own (shift=files needs the user's paths).
REQUIRED = {("shift", "files"): ["shift.upstream=data/en/*.jsonl", "shift.downstream=data/de/*.jsonl"]}


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_of_every_group_composes_and_validates(group, option, tmp_path):
    cfg = parse([f"{group}={option}", *REQUIRED.get((group, option), [])], tmp_path)
    assert cfg is not None


def test_defaults_match_design():
    cfg = parse([])
    assert (cfg.warmup, cfg.lr.max, cfg.lr.min_ratio, cfg.replay, cfg.seed) == (0.01, 3e-4, 0.1, 0.0, 0)
    assert (cfg.model.name, cfg.shift.name, cfg.schedule.name, cfg.recipe.name, cfg.trainer.name) == \
        ("tiny", "synthetic-weak", "cosine", "cpt", "cpu")
    assert (cfg.pretrain.warmup, cfg.pretrain.lr.max, cfg.pretrain.lr.min_ratio, cfg.pretrain.schedule) == \
        (0.01, 3e-4, 0.1, "cosine")
    assert cfg.tokenizer == "bpe" and cfg.objective == "final/avg_loss"
    assert cfg.tracking.uri == "sqlite:///outputs/mlflow.db"
    # the continual stage is long enough for a 0.5% warm-up to be a real warm-up
    assert cfg.shift.datasets[1].tokens // cfg.batch.tokens >= 1000


BAD = [
    ("warmup=1", "warmup"), ("warmup=-0.1", "warmup"), ("replay=1.0", "replay"), ("replay=-0.5", "replay"),
    ("lr.max=0", "lr.max"), ("lr.max=-1e-4", "lr.max"), ("lr.min_ratio=1.5", "lr.min_ratio"),
    ("pretrain.lr.max=0", "pretrain.lr.max"), ("pretrain.warmup=2", "pretrain.warmup"),
    ("shift.datasets.1.tokens=1000", "shift.datasets.1.tokens"), ("batch.tokens=100", "batch.tokens"),
    ("warmup=abc", "warmup"),
]


@pytest.mark.parametrize("override,key", BAD)
def test_bad_values_name_the_key_and_what_is_allowed(override, key):
    with pytest.raises(UserError) as e:
        parse([override])
    msg = str(e.value)
    assert msg.startswith(key + "=") and ("allowed" in msg or "expected" in msg) and "\n" not in msg


@pytest.mark.parametrize("args,needle", [
    (["warmup=1.5"], "warmup=1.5: allowed 0 <= warmup < 1"),
    (["model=gpt5"], "model=gpt5: unknown option; allowed: "),
    (["-m", "shift=nope,synthetic-weak"], "shift=nope: unknown option"),
    (["shift.datasets.0.tokens=512"], "shift.datasets.0.tokens=512: allowed at least one batch"),
    (["tracking=server", f"tracking.uri=http://127.0.0.1:{DOWN}", "tracking.connect_timeout_s=2"],
     f"tracking.uri=http://127.0.0.1:{DOWN}: no MLflow server answered within 2 s"),
], ids=["range", "group-option", "sweep-option", "budget", "server-down"])  # DOWN differs per process
def test_cli_bad_input_is_one_line_and_writes_nothing(args, needle, tmp_path):
    out = tmp_path / "outputs"
    res = run_cli([*args, f"paths.output_dir={out}"], timeout=120)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {lines[0][len('error: '):]}"] and needle in lines[0], res.stderr
    assert not (out / "mlflow.db").exists() and not (out / "cache").exists() and not (out / "data").exists()


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    out = tmp_path / "outputs"
    res = run_cli(["dry_run=true", "warmup=0.005", f"paths.output_dir={out}"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "stage 0 syn-en-a: 1,000 steps, 2,048,000 tokens" in res.stdout
    assert "stage 1 syn-en-b: 1,000 steps" in res.stdout and "warmup 0.005" in res.stdout
    assert "FLOPs" in res.stdout and "min on this CPU" in res.stdout
    assert not (out / "mlflow.db").exists() and not (out / "cache").exists()


@pytest.mark.parametrize("overrides", [
    ["objective=gap/syn-en-b/depth"],
    ["objective=[final/avg_loss,gap/syn-en-a/peak_tokens]"],
    ["harness=synthetic", "objective=final/harness_avg"],
    ["harness=synthetic", "objective=harness_forgetting"],
    ["harness.tasks=[{task: hellaswag, dataset: 1}]", "objective=final/harness_downstream_avg"],
    ["ema.decay=0.9", "objective=final/syn-en-b/loss_ema"],
])
def test_an_objective_may_name_what_other_features_log(overrides, tmp_path):
    """Task scores, stability-gap and EMA metrics are objectives where the run logs them."""
    cfg = parse(overrides, tmp_path)
    assert cfg.objective


@pytest.mark.parametrize("overrides, wrong", [
    (["objective=final/harness_avg"], "final/harness_avg"),  # no tasks: no scores
    (["harness.tasks=[{task: hellaswag, dataset: 1}]", "objective=harness_forgetting"], "harness_forgetting"),
    (["objective=gap/syn-en-b/recovery_tokens"], "gap/syn-en-b/recovery_tokens"),  # absent when never back
    (["recipe=union", "objective=gap/syn-en-b/depth"], "gap/syn-en-b/depth"),  # no continual stage
])
def test_an_objective_the_run_would_not_log_is_refused(overrides, wrong, tmp_path):
    from cpt.errors import UserError

    with pytest.raises(UserError, match=f"objective={wrong}: allowed one of the metrics the run logs"):
        parse(overrides, tmp_path)
