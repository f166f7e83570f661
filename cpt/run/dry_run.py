"""`dry_run=true`: what a run would do, without doing it."""

from __future__ import annotations

from cpt.store.prefix_cache import PrefixCache
from cpt.store.stage_checkpoints import StageCheckpoints
from cpt.config.schema import RunConfig
from cpt.plan.identity import prefix_key, run_key
from cpt.model.spec import flops_per_token, n_params
from cpt.plan.stages import build_plan
from cpt.plan.walk import walk
from cpt.plan.recipes import stage_label
from cpt.plan.schedules import describe as describe_schedule

# Measured here: the tiny model trains 2,048 tokens x 1.19e6 FLOPs/token in ~40 ms on 2 cores
# (fp32), i.e. ~6e10 FLOP/s. Used only for the time estimate of a dry run.
CPU_FLOPS_PER_S = 6e10


def describe(cfg: RunConfig, choices: dict) -> str:
    stages = build_plan(cfg)
    cache = PrefixCache(cfg.paths.root / "cache")
    vocab = cfg.model.padded_vocab(cfg.shift.bpe_vocab_size if cfg.tokenizer == "bpe" else 50277)
    fpt = flops_per_token(cfg.model, vocab)
    lines = ["plan: " + " ".join(f"{k}={v}" for k, v in choices.items() if v),
             f"model {cfg.model.name}: {n_params(cfg.model, vocab):,} parameters, {fpt:.3g} training FLOPs/token",
             f"batch: {cfg.batch.tokens:,} tokens = {cfg.sequences_per_batch} sequences of {cfg.model.seq_len}"
             + _split(cfg)] + _epochs(cfg)
    if cfg.ema.decay is not None:
        lines.append(f"ema: decay {cfg.ema.decay:g} in every trained stage, evaluated beside the weights"
                     + ("; the average is each stage's final model (ema.use)" if cfg.ema.use else ""))
    total_flops = 0.0
    plan = walk(cfg, stages)
    for step in plan.cached:
        if step.stage not in stages:  # union/scratch: the chain's D0 model, their reference
            first = step.stage
            cached = cache.get(step.key) is not None
            total_flops += 0 if cached else first.tokens * fpt
            todo = f"model.init={first.init} to load" if first.init else f"{first.steps:,} steps to train"
            lines.append(f"  reference: stage 0 of the chain ({cfg.shift.datasets[0].name}), "
                         + ("cached" if cached else todo))
    for s in stages:
        key = prefix_key(cfg, stages, s.index)
        cached = s is not plan.own and cache.get(key, touch=False) is not None
        name = f"run-{run_key(cfg, stages)}" if s is plan.own else f"prefix-{key}"
        done = 0 if cached else StageCheckpoints(cfg.paths.root / "checkpoints" / name).latest() or 0
        flops = (s.tokens - done * cfg.batch.tokens) * fpt  # a stage with a checkpoint resumes there
        total_flops += 0 if cached else flops
        lines.append(_stage_line(cfg, s, key, cached, done, flops))
    est = total_flops / CPU_FLOPS_PER_S if cfg.trainer.accelerator == "cpu" else None
    lines.append(f"to train: {total_flops:.3g} FLOPs" + (f", ~{est / 60:.1f} min on this CPU" if est else ""))
    return "\n".join(lines)


def _stage_line(cfg: RunConfig, s, key: str, cached: bool, done: int, flops: float) -> str:
    tag = f"  [cached {key[:12]}]" if cached else ""
    if s.init:
        return (f"  stage {s.index} {stage_label(cfg, s)}: the pretrained model.init={s.init}, loaded and "
                "evaluated (not trained)" + tag)
    return (f"  stage {s.index} {stage_label(cfg, s)}: {s.steps:,} steps, {s.tokens:,} tokens, "
            f"{describe_schedule(s.schedule)}{', from the pre-anneal weights' if s.from_pre_anneal else ''}"
            f"{_mixture(cfg, s)}, {flops:.3g} FLOPs" + tag
            + (f"  [resumes from its checkpoint at step {done:,}]" if done else ""))


def _mixture(cfg: RunConfig, s) -> str:
    """", replay 5.0% (a 2.6%, b 2.4%)", or a union's ", mix a 50.0%, b 50.0%"."""
    names = [d.name for d in cfg.shift.datasets]
    parts = [f"{names[i]} {s.replay * w:.3%}" for i, w in enumerate(s.replay_weights)]
    if s.from_scratch and s.replay_weights:
        return ", mix " + ", ".join(parts + [f"{names[s.dataset]} {1 - s.replay:.3%}"])
    return f", replay {s.replay:.1%} ({', '.join(parts)})" if s.replay else ""


def _epochs(cfg: RunConfig) -> list[str]:
    """With shift.allow_epochs: how many times each dataset is read, from its shard's manifest
    (the MLflow param data.<name>.epochs); a shard not built yet is not known yet. Without it a
    budget beyond the data is the run's error, and the plan reads no manifest (no work)."""
    if not cfg.shift.allow_epochs:
        return []
    from cpt.data.prepare import epochs, shard_dirs
    from cpt.data.shards import open_shard

    fp, dirs = shard_dirs(cfg)
    shards = {n: open_shard(p, fp, check=False) for n, p in dirs.items()}
    reads = epochs(cfg, shards)
    said = [f"{n} {reads[n]:.3g} epochs" if n in reads
            else f"{n} at most 1 epoch" if shards.get(n) else f"{n} ? (its shard is not built yet)"
            for n in dict.fromkeys(d.name for d in cfg.shift.datasets)]
    return ["data (shift.allow_epochs): " + ", ".join(said)]


def _split(cfg: RunConfig) -> str:
    from cpt.dist.strategy import layout

    lay = layout(cfg)
    return f"; per device {lay.micro} x {lay.accumulation} (micro-batch x accumulation) on {lay.world} device(s)"
