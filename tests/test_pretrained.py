"""Models in and out: model.init from a GPT-NeoX checkpoint the test saves itself, export and
re-load with transformers, and the bad-input table (one line, exit 2, nothing half-written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpt.errors import UserError

from conftest import TINY, parse, run_cli

ROOT = Path(__file__).resolve().parents[1]


def save_tiny_neox(path: Path, seed: int = 123, **changes) -> Path:
    """A tiny GPT-NeoX in save_pretrained format with the `tiny` model's shape (vocab 1024)."""
    import dataclasses

    import torch

    from cpt.model.spec import ModelSpec, build_model

    spec = ModelSpec("tiny", n_layer=2, d_model=64, n_head=4, seq_len=128, vocab_multiple=64)
    vocab = changes.pop("vocab", 1024)
    spec = dataclasses.replace(spec, **changes)
    torch.manual_seed(seed)
    build_model(spec, vocab).save_pretrained(path)
    return path


def test_model_init_enters_the_prefix_identity(tmp_path):
    from cpt.plan.identity import prefix_key
    from cpt.plan.stages import build_plan

    ckpt = save_tiny_neox(tmp_path / "ckpt")
    plain = parse(TINY)
    init = parse(TINY + [f"model.init={ckpt}"])
    stages = build_plan(init)
    assert stages[0].init == str(ckpt) and stages[0].steps == 0 and not stages[0].from_scratch
    assert stages[1].replay_weights == build_plan(plain)[1].replay_weights
    before = [prefix_key(init, stages, k) for k in range(2)]
    assert before[0] != prefix_key(plain, build_plan(plain), 0)
    save_tiny_neox(tmp_path / "ckpt", seed=7)  # other weights under the same name: another stage 0
    after = [prefix_key(init, stages, k) for k in range(2)]
    assert before[0] != after[0] and before[1] != after[1]


@pytest.mark.slow
def test_model_init_is_stage_0_and_the_export_loads_back(out, tmp_path):
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXForCausalLM

    from cpt.data.prepare import prepare
    from cpt.train.module import evaluate
    from cpt.train.trainer import val_loaders
    from test_end_to_end import client, run_tiny, runs_of_kind

    ckpt = save_tiny_neox(tmp_path / "ckpt")
    cfg, result = run_tiny(out, [f"model.init={ckpt}", "export=true", "shift.datasets.1.tokens=4096"])
    data = prepare(cfg)
    loaders = val_loaders(cfg, data)
    direct = evaluate(GPTNeoXForCausalLM.from_pretrained(ckpt), loaders, "cpu")

    (prefix,) = runs_of_kind(out, "prefix")
    assert prefix.data.tags["cpt.init"] == str(ckpt)
    assert "train/loss" not in prefix.data.metrics  # loaded, not trained
    assert result.stage0["val"] == pytest.approx(direct, rel=1e-6)
    assert result.stage0["end_tokens"] == 0

    run = client(out).get_run(result.run_id)
    m = run.data.metrics
    assert m["forgetting"] == pytest.approx(m["final/syn-en-a/loss"] - direct["syn-en-a"], rel=1e-6)
    first = min(client(out).get_metric_history(result.run_id, "val/syn-en-a/loss"), key=lambda h: h.step)
    assert first.step == 0 and first.value == pytest.approx(direct["syn-en-a"], rel=1e-5)  # stage 1 starts there
    assert m["compute/tokens_with_prefix"] == m["compute/tokens"]  # nothing trained before stage 1

    export = Path(run.data.tags["cpt.export_dir"])
    model = AutoModelForCausalLM.from_pretrained(export)
    again = evaluate(model, loaders, "cpu")
    for name in ("syn-en-a", "syn-en-b"):
        assert again[name] == pytest.approx(m[f"final/{name}/loss"], rel=1e-5)
    tok = AutoTokenizer.from_pretrained(export)
    text = "brastea clouster thaind."
    assert tok(text)["input_ids"] == data.tokenizer.encode(text).ids
    assert tok.eos_token == "<|endoftext|>"
    assert not np.allclose(model.gpt_neox.embed_in.weight.detach().numpy(),
                           GPTNeoXForCausalLM.from_pretrained(ckpt).gpt_neox.embed_in.weight.detach().numpy())

    # ... and as the run's MLflow model (transformers flavour): a text-generation pipeline
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{out}/mlflow.db")
    pipe = mlflow.transformers.load_model(f"runs:/{result.run_id}/model")
    said = pipe(text, max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert said.startswith(text) and len(said) > len(text)


# ----------------------------------------------------------------------------- bad input


def _offline(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _corpus(d: Path) -> Path:
    from cpt.data import synthetic
    import itertools

    d.mkdir(parents=True, exist_ok=True)
    docs = itertools.islice(synthetic.documents(synthetic.SyntheticSpec("en", (1,) * 6, 0)), 400)
    (d / "a.jsonl").write_text("".join(json.dumps({"text": x}) + "\n" for x in docs))
    return d


def _setup(kind: str, tmp: Path, monkeypatch) -> list[str]:
    """Overrides that produce one kind of bad input (files made under `tmp`)."""
    good = _corpus(tmp / "good")
    files = ["shift=files", f"shift.downstream={good}"]
    if kind == "missing path":
        return files + [f"shift.upstream={tmp}/nope/a.jsonl"]
    if kind == "glob matching nothing":
        return files + [f"shift.upstream={good}/*.parquet"]
    if kind == "empty file":
        (tmp / "empty.jsonl").write_text("")
        return files + [f"shift.upstream={tmp}/empty.jsonl"]
    if kind == "wrong text field":
        return files + [f"shift.upstream={good}", "shift.text_field=body"]
    if kind == "unreadable parquet":
        (tmp / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
        return files + [f"shift.upstream={tmp}/bad.parquet"]
    if kind == "hub unreachable":
        _offline(monkeypatch)
        return ["shift=en-de"]
    if kind == "tokenizer file missing":
        return files + [f"shift.upstream={good}", f"tokenizer={tmp}/tok.json"]
    if kind == "tokenizer hub offline":
        _offline(monkeypatch)
        return files + [f"shift.upstream={good}", "tokenizer=gpt-neox-20b"]
    if kind == "checkpoint of another architecture":
        (tmp / "gpt2").mkdir()
        (tmp / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
        return [f"model.init={tmp}/gpt2"]
    if kind == "checkpoint of another size":
        save_tiny_neox(tmp / "wide", d_model=128)
        return [f"model.init={tmp}/wide"]
    if kind == "checkpoint missing":
        return [f"model.init={tmp}/no-such-dir"]
    if kind == "checkpoint on an unreachable hub":
        _offline(monkeypatch)
        return ["model.init=EleutherAI/pythia-14m"]
    if kind == "checkpoint vocabulary smaller than the tokenizer":
        save_tiny_neox(tmp / "small-vocab", vocab=512)
        return [f"model.init={tmp}/small-vocab"]
    raise AssertionError(kind)


BAD = {
    "missing path": "does not exist",
    "glob matching nothing": "matches no files",
    "empty file": "holds no documents",
    "wrong text field": "has no field 'body'",
    "unreadable parquet": "not a readable parquet file",
    "hub unreachable": "unreachable from this machine",
    "tokenizer file missing": "no such file",
    "tokenizer hub offline": "cannot fetch EleutherAI/gpt-neox-20b",
    "checkpoint of another architecture": "a gpt2 checkpoint; allowed: GPT-NeoX",
    "checkpoint of another size": "its architecture (d_model 128, d_ff 512) is not model=tiny's",
    "checkpoint missing": "no such directory",
    "checkpoint on an unreachable hub": "cannot fetch it from the Hugging Face hub (offline mode: HF_HUB_OFFLINE=1)",
    "checkpoint vocabulary smaller than the tokenizer": "embedding has 512 rows",
}


def _finished_results(out: Path) -> list[str]:
    """What a later run could take for a finished result: shards, cache entries, exports."""
    found = []
    for sub in ("data", "cache", "export"):
        if (out / sub).is_dir():
            found += [f"{sub}/{p.name}" for p in (out / sub).iterdir() if not p.name.startswith(".")
                      and p.name != "locks"]
    return found


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_one_line_and_leaves_nothing(kind, tmp_path, out, monkeypatch):
    from test_end_to_end import run_tiny

    overrides = _setup(kind, tmp_path, monkeypatch)
    before = _finished_results(out)
    with pytest.raises(UserError) as e:
        run_tiny(out, overrides)
    message = str(e.value)
    assert BAD[kind] in message, message
    assert "\n" not in message and e.value.exit_code == 2
    assert _finished_results(out) == before


def test_tokenizer_mismatch_with_existing_shards_is_never_reused(out):
    from cpt.data.prepare import prepare

    cfg = parse(TINY, out)
    data = prepare(cfg)
    manifest = data.shards["syn-en-a"].path / "manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "tokenizer": "0123456789abcdef"}))  # shards of another tokenizer
    with pytest.raises(UserError) as e:
        prepare(cfg)
    assert "built with tokenizer 0123456789abcdef" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_cli_exit_status_2_and_one_line(tmp_path):
    res = run_cli(["shift=files", f"shift.upstream={tmp_path}/none/*.jsonl", f"shift.downstream={tmp_path}",
                   f"paths.output_dir={tmp_path}/out"])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: shift.datasets.0.source.paths: the pattern")
    assert not (tmp_path / "out" / "data").exists() or not _finished_results(tmp_path / "out")


@pytest.mark.slow
def test_a_kill_while_loading_model_init_leaves_no_running_run(tmp_path, out):
    """SIGKILL after the model.init stage opened its MLflow run: the same command again marks that
    run KILLED (it holds the prefix's lock, so nobody else runs it) and finishes the chain."""
    import os

    from test_end_to_end import run_tiny, runs_of_kind

    ckpt = save_tiny_neox(tmp_path / "ckpt")
    args = [*TINY, f"model.init={ckpt}", "shift.datasets.1.tokens=4096", f"paths.output_dir={out}"]
    os.environ["CPT_FAULT"] = "init:1"
    try:
        killed = run_cli(args, timeout=300)
    finally:
        del os.environ["CPT_FAULT"]
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [r.info.status for r in runs_of_kind(out, "prefix")] == ["RUNNING"]
    assert not list((out / "cache").glob("*/result.json"))  # nothing cached by the killed process

    run_tiny(out, args[len(TINY):-1])  # the same command, in this process (a start costs ~10 s)
    prefixes = runs_of_kind(out, "prefix")
    assert sorted(r.info.status for r in prefixes) == ["FINISHED", "KILLED"]
    assert {r.data.tags["cpt.prefix_key"] for r in prefixes} == {prefixes[0].data.tags["cpt.prefix_key"]}
    assert [r.info.status for r in runs_of_kind(out, "run")] == ["FINISHED"]
