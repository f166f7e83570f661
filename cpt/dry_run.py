"""`dry_run=true`: what a run would do, without doing it."""

from __future__ import annotations

from cpt.cache import PrefixCache
from cpt.config import RunConfig
from cpt.identity import prefix_key
from cpt.model import flops_per_token, n_params
from cpt.plan import build_plan
from cpt.schedules import describe as describe_schedule

# Measured on the 2-core CPU of STACK.md (tiny model, fp32): used only for the time estimate.
CPU_FLOPS_PER_S = 4e9


def describe(cfg: RunConfig, choices: dict) -> str:
    stages = build_plan(cfg)
    cache = PrefixCache(cfg.paths.root / "cache")
    vocab = cfg.model.padded_vocab(cfg.shift.bpe_vocab_size if cfg.tokenizer == "bpe" else 50277)
    fpt = flops_per_token(cfg.model, vocab)
    lines = ["plan: " + " ".join(f"{k}={v}" for k, v in choices.items() if v),
             f"model {cfg.model.name}: {n_params(cfg.model, vocab):,} parameters, {fpt:.3g} training FLOPs/token",
             f"batch: {cfg.batch.tokens:,} tokens = {cfg.sequences_per_batch} sequences of {cfg.model.seq_len}"]
    total_flops = 0.0
    for s in stages:
        d = cfg.shift.datasets[s.dataset]
        key = prefix_key(cfg, stages, s.index)
        cached = s.index < len(stages) - 1 and cache.get(key) is not None
        flops = s.tokens * fpt
        total_flops += 0 if cached else flops
        if s.init:
            lines.append(f"  stage {s.index} {d.name}: the pretrained model.init={s.init}, loaded and evaluated "
                         "(not trained)" + (f"  [cached {key[:12]}]" if cached else ""))
            continue
        replay = f", replay {s.replay:.1%} from {', '.join(cfg.shift.datasets[i].name for i in range(len(s.replay_weights)))}" if s.replay else ""
        lines.append(f"  stage {s.index} {d.name}: {s.steps:,} steps, {s.tokens:,} tokens, "
                     f"{describe_schedule(s.schedule)}{', from the pre-anneal weights' if s.from_pre_anneal else ''}"
                     f"{replay}, {flops:.3g} FLOPs" + (f"  [cached {key[:12]}]" if cached else ""))
    est = total_flops / CPU_FLOPS_PER_S if cfg.trainer.accelerator == "cpu" else None
    lines.append(f"to train: {total_flops:.3g} FLOPs" + (f", ~{est / 60:.1f} min on this CPU" if est else ""))
    return "\n".join(lines)
