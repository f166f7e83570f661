"""Benchmark 1: cpt's training loop against a bare PyTorch loop of the same model, batch and data.

cpt's side is `cpt.train.trainer.train_stage` as a run uses it: a Lightning Trainer, cpt's metrics
callback and progress bar, metrics sent to a real MLflow SQLite store. The bare side is the
loop one would write by hand: the same model (same initial weights), the same sequences in the
same order, the same loss function (cpt/train/loss.py), AdamW + LambdaLR + gradient clipping at 1.0,
and nothing else: the ratio is the cost of the framework around the step. Both are timed over
the same window: from the end of optimizer step 0 to the end of step `--steps` (evaluation at
the stage's start and end lies outside it). Prints tokens/s of each pair and the median ratio.
Target: >= 0.95.

    python bench/loop.py                      # the default run's model and batch (tiny, 16 x 128)
    python bench/loop.py --pairs 10 --steps 100 model=pythia-14m model.seq_len=512 batch.tokens=4096
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from _common import machine, median_ratio, pairs, scratch

import torch

from cpt.cli.compose import compose
from cpt.config.schema import parse
from cpt.data.prepare import prepare
from cpt.train.module import BETAS, EPS, WEIGHT_DECAY
from cpt.train.loss import causal_lm_loss
from cpt.model.spec import build_model
from cpt.plan.stages import build_plan
from cpt.dist.strategy import layout
from cpt.plan.schedules import lr_at
from cpt.store.tracking import Tracker
from cpt.train.trainer import stage_sequences, train_stage


def setup(overrides: list[str], steps: int):
    out = scratch("loop")
    # One evaluation at each end of the stage only, a log every 10 steps (the default interval).
    cfg = parse(compose(list(overrides) + [f"paths.output_dir={out}", "eval.interval_steps=1000000",
                                           "eval.warmup_interval_steps=1000000", "eval.dense_evals=0",
                                           "log_interval_steps=10"]))
    data = prepare(cfg)  # not timed
    stage = build_plan(cfg)[0]
    T = steps + 1
    stage = dataclasses.replace(stage, steps=T, tokens=T * cfg.batch.tokens)
    return cfg, data, stage


def fresh_model(cfg, data):
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, cfg.model.padded_vocab(data.vocab_size))


def cpt_loop(cfg, data, stage, steps: int) -> float:
    """tokens/s of train_stage between the logs after step 0 and after step `steps`."""
    log = Tracker(cfg.tracking).start_run("bench-loop", {}, {"cpt.kind": "bench"})
    stamps = {}

    def sink(metrics, tokens):
        if "train/loss" in metrics:
            stamps[tokens // cfg.batch.tokens] = time.perf_counter()
        log.log_metrics(metrics, tokens)

    train_stage(cfg, stage, fresh_model(cfg, data), data, sink, 0, "cpt loop")
    log.end()
    return steps * cfg.batch.tokens / (stamps[steps] - stamps[0])


def bare_loop(cfg, data, stage, steps: int) -> float:
    model = fresh_model(cfg, data)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "layernorm" not in n.lower()]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "layernorm" not in n.lower())]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1.0, betas=BETAS, eps=EPS)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, stage.steps, stage.schedule))
    lay = layout(cfg)
    loader = iter(torch.utils.data.DataLoader(stage_sequences(cfg, stage, data), batch_size=lay.micro, shuffle=False))
    t0 = None
    for step in range(steps + 1):
        opt.zero_grad(set_to_none=True)
        for _ in range(lay.accumulation):
            tokens = next(loader)[0]  # (windows, sources, sequence ids)
            (causal_lm_loss(model, tokens) / lay.accumulation).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step == 0:
            t0 = time.perf_counter()
    return steps * cfg.batch.tokens / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100, help="timed optimizer steps per measurement")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the run config (default: the default run)")
    args = ap.parse_args()
    cfg, data, stage = setup(args.overrides, args.steps)
    lay = layout(cfg)
    print(f"machine: {machine()}")
    print(f"model {cfg.model.name}, batch {cfg.batch.tokens} tokens = {lay.micro} x {lay.accumulation} sequences "
          f"of {cfg.model.seq_len}, {args.steps} timed steps, {args.pairs} interleaved pairs (cpt, bare) in tokens/s")
    ps = pairs(args.pairs, lambda: cpt_loop(cfg, data, stage, args.steps), lambda: bare_loop(cfg, data, stage, args.steps))
    print(f"loop: cpt / bare PyTorch tokens/s, median of {len(ps)} pairs = {median_ratio(ps):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
