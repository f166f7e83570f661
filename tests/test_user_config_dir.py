"""A user's own config options without editing the package: Hydra's config dir.

    python run.py --config-dir my_conf shift=my-corpus model=my-model     # also -cd my_conf
    python run.py hydra.searchpath=[file://my_conf] shift=my-corpus model=my-model

cpt checks `group=option` before Hydra composes (cpt/cli/search_path.py): an option on Hydra's
search path is accepted, a missing one is one line (exit 2) listing what is allowed there.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cpt.cli.search_path import command_line_options
from cpt.config.schema import check_group_choices
from cpt.errors import UserError

from conftest import CONF, ROOT, run_cli
from conftest import hydra_multirun as run_py  # run.py in this process, its stdout

# Modelled on conf/shift/synthetic-weak.yaml, at 16 steps of 512 tokens a stage.
MY_CORPUS = """\
# A user's own shift: two synthetic datasets, the second with other topics.
name: my-corpus
tokenizer: bpe
bpe_vocab_size: 512
datasets:
  - name: my-a
    tokens: 8192
    val_tokens: 1024
    source: {type: synthetic, language: en, topic_weights: [0.5, 0.5, 0.0, 0.0, 0.0, 0.0], split: 0}
  - name: my-b
    tokens: 8192
    val_tokens: 1024
    source: {type: synthetic, language: en, topic_weights: [0.0, 0.0, 0.0, 0.0, 0.5, 0.5], split: 1}
"""
# Modelled on conf/model/tiny.yaml, smaller still.
MY_MODEL = """\
name: my-model
n_layer: 1
d_model: 32
n_head: 2
seq_len: 128
vocab_multiple: 64
init: null
"""
SMALL = ["batch.tokens=512", "batch.micro_sequences=4", "eval.interval_steps=8", "log_interval_steps=4"]


@pytest.fixture(scope="module")
def my_conf(tmp_path_factory):
    d = tmp_path_factory.mktemp("my_conf")
    (d / "shift").mkdir()
    (d / "model").mkdir()
    (d / "shift" / "my-corpus.yaml").write_text(MY_CORPUS)
    (d / "model" / "my-model.yaml").write_text(MY_MODEL)
    return d


def check(argv: list[str]) -> None:
    """What main_guard checks before Hydra for `python run.py <argv>`."""
    options, overrides = command_line_options(argv, CONF)
    check_group_choices(overrides, options)


@pytest.mark.slow
def test_trains_the_users_shift_and_model_end_to_end(my_conf, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "outputs"
    printed = run_py(["--config-dir", str(my_conf), "shift=my-corpus", "model=my-model", *SMALL,
                      f"paths.output_dir={out}"])
    assert "final my-b" in printed, printed
    c = MlflowClient(f"sqlite:///{out}/mlflow.db")
    exp = c.get_experiment_by_name("cpt")
    (r,) = c.search_runs([exp.experiment_id], "tags.`cpt.kind` = 'run'")
    assert r.info.status == "FINISHED"
    assert r.data.params["shift"] == "my-corpus" and r.data.params["model"] == "my-model"
    assert r.data.params["model.d_model"] == "32" and r.data.params["shift.datasets.1.name"] == "my-b"
    assert {"final/my-a/loss", "final/my-b/loss", "final/avg_loss", "forgetting"} <= set(r.data.metrics)


def test_hydra_searchpath_reaches_the_same_options(my_conf, tmp_path):
    printed = run_py([f"hydra.searchpath=[file://{my_conf}]", "shift=my-corpus", "model=my-model", *SMALL,
                      "dry_run=true", f"paths.output_dir={tmp_path}"])
    assert "plan: model=my-model shift=my-corpus" in printed, printed
    assert "stage 1 my-b: 16 steps, 8,192 tokens" in printed, printed


def test_missing_option_under_config_dir_is_one_line_listing_the_users_options(my_conf, tmp_path):
    res = run_cli(["--config-dir", str(my_conf), "shift=my-corpu", f"paths.output_dir={tmp_path}"], timeout=120)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: shift=my-corpu: unknown option; allowed: "), res.stderr
    allowed = lines[0].split("allowed: ", 1)[1].split(", ")
    assert "my-corpus" in allowed and "synthetic-weak" in allowed
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("where", [["-cd", "{d}"], ["--config-dir={d}"], ["hydra.searchpath=[file://{d}]"]])
def test_every_way_to_name_the_dir_is_checked(my_conf, where):
    where = [w.format(d=my_conf) for w in where]
    check(["-m", *where, "shift=my-corpus", "model=my-model", "schedule=cosine,constant"])
    with pytest.raises(UserError, match=r"^model=my-modle: unknown option; allowed: .*my-model.*tiny"):
        check([*where, "model=my-modle"])
    with pytest.raises(UserError, match="shift=my-corpus: unknown option"):
        check(["shift=my-corpus"])  # without the dir: the package's conf/ only


def test_relative_config_dir_and_cpt_commands(my_conf, monkeypatch):
    from cpt.cli.compose import compose

    monkeypatch.chdir(my_conf.parent)
    check(["-cd", my_conf.name, "shift=my-corpus"])  # relative to where run.py is launched
    dc = compose([f"hydra.searchpath=[file://{my_conf}]", "shift=my-corpus", "model=my-model"])
    assert dc.hydra.runtime.choices.shift == "my-corpus" and dc.model.d_model == 32
    with pytest.raises(UserError, match=r"^shift=nope: unknown option; allowed: .*my-corpus"):
        compose([f"hydra.searchpath=[file://{my_conf}]", "shift=nope"])


def test_shipped_sweeps_keep_their_search_path(my_conf):
    sweeps = str(ROOT / "sweeps")
    check(["-cd", sweeps, "-cn", "warmup", "shift=synthetic-strong", "model=pythia-14m"])
    with pytest.raises(UserError, match=r"^model=gpt5: unknown option; allowed: neox-10b, .*tiny$"):
        check(["-cd", sweeps, "-cn", "warmup", "model=gpt5"])
    # a user's dir beside a sweep: a command-line hydra.searchpath (conf/ stays: run.py's own dir)
    check(["-cd", sweeps, "-cn", "warmup", f"hydra.searchpath=[file://{my_conf}]", "shift=my-corpus", "model=tiny"])


def test_a_config_dir_that_does_not_exist_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^--config-dir .*nope: no such directory"):
        check(["--config-dir", str(tmp_path / "nope"), "shift=my-corpus"])


def test_other_ranks_are_relaunched_with_the_same_search_path(my_conf):
    from cpt.cli.task import relaunch_command

    src = lambda path, provider, schema="file": SimpleNamespace(path=path, provider=provider, schema=schema)
    hc = SimpleNamespace(
        runtime=SimpleNamespace(output_dir="/o/run", config_sources=[
            src("hydra.conf", "hydra", "pkg"), src(str(CONF), "main"), src(str(my_conf), "command-line"),
            src(str(my_conf), "hydra.searchpath in command-line"), src("", "schema", "structured")]),
        job=SimpleNamespace(config_name="config"),
        overrides=SimpleNamespace(hydra=[f"hydra.searchpath=[file://{my_conf}]", "hydra.mode=MULTIRUN"],
                                  task=["shift=my-corpus", "trainer=ddp"]))
    cmd = relaunch_command(hc)
    assert cmd[2:8] == ["--config-path", str(CONF), "--config-name", "config", "--config-dir", str(my_conf)]
    assert cmd[8:11] == [f"hydra.searchpath=[file://{my_conf}]", "shift=my-corpus", "trainer=ddp"]
    assert cmd[-1] == "hydra.mode=RUN" and "hydra.mode=MULTIRUN" not in cmd
    check(cmd[2:])  # what the relaunched rank's main_guard sees passes too
