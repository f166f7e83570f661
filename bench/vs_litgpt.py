"""Benchmark 2: cpt's training loop against litgpt's pretraining loop (`litgpt pretrain`) on the
same Pythia-14m-shaped model and the same data.

Model: pythia-14m (6 layers, d 128, 4 heads, rotary on 25%, parallel residual, 50,304 embedding
rows), sequences of 512, batch 8 x 512 = 4,096 tokens a step, fp32, one CPU process each.
Data: D0 of the default shift; litgpt reads it as text files tokenised with cpt's BPE (exported
as a Hugging Face tokenizer folder), so both see the same tokens and the same embedding size.
litgpt always compiles its model; cpt runs eager (on CPU compiling is no faster, docs/stack.md) unless
`--compile`. Throughput on both sides: tokens over the last 4 optimizer steps of a run of
`--steps`, wall clock, everything in the loop included (litgpt: its metrics.csv `time` and
`tokens` columns, logged after every step; cpt: the times its per-step logs arrive).
litgpt lives in bench/.venv-litgpt (made on first use by bench/litgpt_env.py).

    python bench/vs_litgpt.py --pairs 10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import time

from _common import machine, median_ratio, pairs, scratch

import litgpt_env

CPT = ["model=pythia-14m", "model.seq_len=512", "+model.vocab_size=50304", "batch.tokens=4096",
       "batch.micro_sequences=8", "eval.interval_steps=1000000", "eval.warmup_interval_steps=1000000", "eval.dense_evals=0",
       "log_interval_steps=1", "shift.datasets.0.val_tokens=4096", "shift.datasets.1.val_tokens=4096"]
WINDOW = 4  # timed step intervals at the end of each run (the first steps hold litgpt's compile)


def export_for_litgpt(out, data, cfg) -> tuple:
    """cpt's BPE as a tokenizer folder, and D0 as text files (the first is litgpt's validation)."""
    import itertools

    from cpt.data.sources import documents

    tok_dir, text_dir = out / "litgpt-tokenizer", out / "litgpt-text"
    tok_dir.mkdir()
    text_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text(data.tokenizer.to_str())
    eos = "<|endoftext|>"
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": eos, "eos_token": eos, "add_bos_token": False}))
    eos_id = data.tokenizer.token_to_id(eos)
    (tok_dir / "generation_config.json").write_text(json.dumps({"bos_token_id": eos_id, "eos_token_id": eos_id}))
    docs = documents(cfg.shift.datasets[0].source, "shift.datasets.0.source")
    for i in range(4):
        (text_dir / f"part{i}.txt").write_text("\n\n".join(itertools.islice(docs, 1500)))
    return tok_dir, text_dir


def litgpt_run(out, tok_dir, text_dir, steps: int, count=[0]) -> float:
    count[0] += 1
    run_dir = out / f"litgpt-run-{count[0]}"
    cmd = [str(litgpt_env.litgpt()), "pretrain", "pythia-14m", "--data", "TextFiles",
           "--data.train_data_path", str(text_dir), "--data.num_workers", "1", "--tokenizer_dir", str(tok_dir),
           "--out_dir", str(run_dir), "--precision", "32-true", "--devices", "1",
           "--train.micro_batch_size", "8", "--train.global_batch_size", "8", "--train.max_seq_length", "512",
           "--train.max_tokens", str(steps * 4096), "--train.log_interval", "1", "--train.save_interval", "1000000",
           "--eval.interval", "1000000", "--eval.initial_validation", "false", "--eval.final_validation", "false",
           "--logger_name", "csv"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = list(csv.DictReader(open(next(run_dir.glob("logs/csv/*/metrics.csv")))))
    assert int(float(rows[-1]["iter"])) == steps, rows[-1]
    shutil.rmtree(run_dir, ignore_errors=True)
    # `time`: seconds since the loop started, taken at each log point (after the step).
    last, first = rows[-1], rows[-1 - WINDOW]
    return (float(last["tokens"]) - float(first["tokens"])) / (float(last["time"]) - float(first["time"]))


def cpt_run(cfg, data, stage) -> float:
    from loop import fresh_model

    from cpt.train.trainer import train_stage

    stamps = {}

    def sink(metrics, tokens):
        if "train/loss" in metrics:
            stamps[tokens // cfg.batch.tokens] = time.perf_counter()

    train_stage(cfg, stage, fresh_model(cfg, data), data, sink, 0, "cpt")
    last = max(stamps)
    return WINDOW * cfg.batch.tokens / (stamps[last] - stamps[last - WINDOW])


def main():
    import dataclasses

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per run (the last 4 are timed)")
    ap.add_argument("--compile", action="store_true", help="cpt with trainer.compile=true")
    args = ap.parse_args()
    litgpt_env.ensure()

    from cpt.cli.compose import compose_run_config
    from cpt.data.prepare import prepare
    from cpt.plan.stages import build_plan

    out = scratch("litgpt")
    cfg = compose_run_config(CPT + [f"paths.output_dir={out}", f"trainer.compile={str(args.compile).lower()}"])
    data = prepare(cfg)
    stage = dataclasses.replace(build_plan(cfg)[0], steps=args.steps, tokens=args.steps * cfg.batch.tokens)
    tok_dir, text_dir = export_for_litgpt(out, data, cfg)
    print(f"machine: {machine()}")
    print(f"pythia-14m shape, 8 x 512 tokens a step, {args.steps} steps a run, cpt {'compiled' if args.compile else 'eager'}"
          f", litgpt compiled; {args.pairs} interleaved pairs (cpt, litgpt) in tokens/s")
    ps = pairs(args.pairs, lambda: cpt_run(cfg, data, stage), lambda: litgpt_run(out, tok_dir, text_dir, args.steps))
    print(f"litgpt: cpt / litgpt pretrain tokens/s, median of {len(ps)} pairs = {median_ratio(ps):.3f} (target >= 1.0)")


if __name__ == "__main__":
    main()
