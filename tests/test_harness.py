"""lm-evaluation-harness at stage ends: embedded tasks, a user's own task YAML, MLflow names,
a hub task offline, and `cpt evaluate` on a finished run (lm-eval runs for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT, TINY, compose

WEAK = {"type": "synthetic", "language": "en", "topic_weights": [0.3, 0.3, 0.2, 0.2, 0.0, 0.0], "split": 0}


def test_embedded_task_choices_share_words_and_answer_position_is_uniform():
    from cpt.harness.tasks import N_CHOICES, items, unigram_accuracy

    its, counts = items(WEAK)
    assert len(its) == 500 and items(WEAK)[0] == its  # seeded
    for it in its:
        assert len(set(it["choices"])) == N_CHOICES
        assert len({tuple(sorted(Counter(c.split()).items())) for c in it["choices"]}) == 1  # same words
        assert len({len(c) for c in it["choices"]}) == 1  # same bytes
    golds = Counter(it["gold"] for it in its)
    assert min(golds.values()) > 0.15 * len(its)
    assert unigram_accuracy(its, counts) == pytest.approx(1 / N_CHOICES)  # frequency alone: chance


def test_lm_eval_names_become_mlflow_keys():
    from cpt.harness.metrics import final_metrics, metric_names, mlflow_name, primary, stage_metrics

    names = metric_names({"acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,strict-match": 0.2,
                          "alias": "x", "acc_norm,none": "N/A"})
    assert names == {"acc": 0.5, "acc_stderr": 0.1, "exact_match/strict-match": 0.2}
    assert mlflow_name("mmlu@de,x") == "mmlu_de_x" and primary(names) == "acc"
    assert stage_metrics({"t": names})["harness/avg"] == 0.5
    m = final_metrics({"a": {"acc": 0.4}, "b": {"acc_norm": 0.8, "acc": 0.1}}, {"a": {"acc": 0.7}}, {"a": 0, "b": 1}, 1)
    assert m == pytest.approx({"final/harness_avg": 0.6, "final/harness_upstream_avg": 0.4,
                               "final/harness_downstream_avg": 0.8, "harness_forgetting": 0.3})


def test_bad_entries_fail_in_one_line():
    from cpt.errors import UserError
    from cpt.harness.spec import task_refs

    assert [r.dataset for r in task_refs(["x", {"task": "y", "dataset": -1}, {"task": "z", "dataset": "b"}],
                                         ["a", "b"])] == [0, 1, 1]
    with pytest.raises(UserError, match="harness.tasks.0.dataset=5"):
        task_refs([{"task": "y", "dataset": 5}], ["a", "b"])


def test_hub_task_offline_stops_before_any_work(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "harness.tasks=[hellaswag]",
                        f"paths.output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "hellaswag" in lines[0] and "local copy" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing prepared, trained or logged


def _user_task(tmp_path):
    """A user's own local task: a YAML and its jsonl written here, belonging to dataset 1."""
    data = tmp_path / "mytask" / "data.jsonl"
    data.parent.mkdir()
    rows = [{"q": "the", "choices": ["a b", "b a"], "gold": i % 2} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mytask" / "mine.yaml").write_text(
        "task: my_local_task\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {json.dumps(str(data))}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: gold\n"
        "metric_list:\n  - metric: acc\n")
    return tmp_path / "mytask" / "mine.yaml"


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from cpt.config.schema import parse
    from cpt.run.experiment import RunContext, run
    from cpt.store.tracking import flatten

    tmp = tmp_path_factory.mktemp("harness")
    out = tmp / "outputs"
    yaml_path = _user_task(tmp)
    overrides = TINY + ["harness=synthetic", "harness.limit=24", "harness.batch_size=32",
                        f"harness.tasks=[synthetic,{{task:{yaml_path},dataset:1}}]"]
    dc = compose(overrides, out)
    cfg = parse(dc)
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(dc, [k for k in dc if k != "hydra"]), resolve=True)
    said = []
    ctx = RunContext(params=flatten(resolved), run_name="harness", overrides=overrides + [f"paths.output_dir={out}"])
    result = run(cfg, ctx, say=said.append)
    return cfg, result, MlflowClient(f"sqlite:///{out}/mlflow.db"), said, out, overrides


@pytest.mark.slow
def test_run_logs_task_scores_at_every_stage_end(scored_run):
    cfg, result, client, said, out, _ = scored_run
    run = client.get_run(result.run_id).data.metrics
    for task in ("cpt-syn-en-a", "cpt-syn-en-b", "my_local_task"):
        assert 0 <= run[f"harness/{task}/acc"] <= 1
    assert {"final/harness_avg", "harness_forgetting"} <= set(result.metrics)
    for key in ("harness/cpt-syn-en-a/acc", "harness/cpt-syn-en-a/acc_stderr", "harness/cpt-syn-en-a/acc_norm",
                "harness/my_local_task/acc", "harness/avg", "final/harness_avg", "final/harness_upstream_avg",
                "final/harness_downstream_avg", "harness_forgetting"):
        assert key in run, key
    steps = [h.step for h in client.get_metric_history(result.run_id, "harness/avg")]
    assert len(steps) == 2 and steps[0] < steps[1]  # stage 0's model and the final one, on the tokens axis
    assert any("scored in" in s for s in said)


@pytest.mark.slow
def test_cache_entries_keep_scores_and_evaluate_scores_a_finished_run(scored_run):
    from cpt.cli.main import main
    from cpt.store.prefix_cache import PrefixCache

    cfg, result, client, said, out, _ = scored_run
    entries = PrefixCache(out / "cache").entries()
    assert len(entries) == 2 and all(len(e.result.get("harness", {})) == 3 for e in entries)  # stage 0, final
    before = len(client.get_metric_history(result.run_id, "harness/cpt-syn-en-a/acc"))
    assert main(["evaluate", result.run_id, "harness=synthetic", "harness.limit=16", f"paths.output_dir={out}"]) == 0
    after = client.get_metric_history(result.run_id, "harness/cpt-syn-en-a/acc")
    assert len(after) > before  # logged to that run, nothing trained
    assert len(PrefixCache(out / "cache").entries()) == 2


@pytest.mark.slow
def test_a_second_point_of_a_sweep_scores_its_own_model_only(scored_run):
    """Stage 0 is scored once for all the points that share it: a second point (another η_max)
    scores only its final model; the stage-0 prefix run's scores are not logged again."""
    from cpt.config.schema import parse
    from cpt.run.experiment import RunContext, run

    cfg, result, client, said, out, overrides = scored_run
    said2 = []
    second = run(parse(compose([*overrides, "lr.max=1e-3"], out)), RunContext(run_name="second"), say=said2.append)
    assert sum("scored in" in line for line in said) == 2  # the first point: stage 0 and its final model
    assert sum("scored in" in line for line in said2) == 1, said2  # the second: its final model only
    exp = client.get_experiment_by_name("cpt").experiment_id
    (prefix,) = client.search_runs([exp], "tags.`cpt.kind` = 'prefix' and tags.`cpt.stage` = '0'")
    assert len(client.get_metric_history(prefix.info.run_id, "harness/avg")) == 1  # scored once, for both points
    assert "final/harness_avg" in second.metrics and second.run_id != result.run_id


@pytest.mark.slow
def test_a_finished_run_asked_for_tasks_it_lacks_scores_them_into_the_same_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from cpt.config.schema import parse
    from cpt.run.experiment import RunContext, run

    out = tmp_path / "outputs"
    first = run(parse(compose(TINY, out)), RunContext(run_name="plain"), say=lambda _: None)
    said = []
    again = run(parse(compose(TINY + ["harness=synthetic", "harness.limit=16"], out)), RunContext(run_name="plain"),
                say=said.append)
    assert again.run_id == first.run_id and again.skipped  # nothing trained
    assert any("scoring the harness tasks it lacks" in line for line in said)
    logged = MlflowClient(f"sqlite:///{out}/mlflow.db").get_run(first.run_id).data.metrics
    assert "final/harness_avg" in logged and "final/harness_avg" in again.metrics
    assert not any(k.startswith("harness/") for k in first.metrics)
