"""The run's closing numbers (their definitions: docs/metrics.md), from evaluated losses. Pure.

The references (`end_of_own_stage`, `last_at_start`) depend on the recipe (cpt/plan/walk.py):
- cpt: every earlier dataset's loss at the end of the chain stage that trained on it, and the
  last dataset's loss at step 0 of its stage;
- union, scratch, upstream-only: the chain's stage-0 model (2403.08763's D0-only model) for both:
  forgetting = final D0 loss − its D0 loss, adaptation = its loss on the last dataset − the final
  one. For two datasets that is exactly the cpt definition, so one table holds every recipe; for
  longer chains a baseline has no reference for D1..D_{N-2} that the continual knobs leave alone,
  so its forgetting is D0's alone (forgetting/<D0>, comparable across recipes at any N).
"""

from __future__ import annotations


def final_metrics(names: list[str], final: dict[str, float], end_of_own_stage: dict[str, float],
                  last_at_start: float, final_ema: dict[str, float] | None = None) -> dict[str, float]:
    """names: datasets in chain order; final: their losses at the end of the run;
    end_of_own_stage[n]: n's loss at the end of the stage that trained on it;
    last_at_start: the last dataset's loss at step 0 of its stage;
    final_ema: the losses of the run's own stage's moving average at its end (ema.decay), if any."""
    upstream, last = names[:-1], names[-1]
    out = {f"final/{n}/loss": final[n] for n in names}
    out.update({f"final/{n}/loss_ema": final_ema[n] for n in names if final_ema})
    out["final/downstream_loss"] = final[last]
    out["final/upstream_loss"] = sum(final[n] for n in upstream) / len(upstream)
    out["final/avg_loss"] = (out["final/downstream_loss"] + out["final/upstream_loss"]) / 2
    per = {n: final[n] - end_of_own_stage[n] for n in upstream if n in end_of_own_stage}
    for n, f in per.items():
        out[f"forgetting/{n}"] = f
    if per:
        out["forgetting"] = sum(per.values()) / len(per)
    out["adaptation"] = last_at_start - final[last]
    return out


def unigram_entropy(tokens) -> float:
    """Entropy (nats/token) of the token frequencies: what a model without context could reach."""
    import numpy as np

    counts = np.bincount(np.asarray(tokens)).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
