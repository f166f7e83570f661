"""The stages of each recipe: the continual chain and the baselines of 2403.08763 (pure).

- `cpt`: the chain itself (plan.chain_plan).
- `union`: one stage from random weights on D0 ∪ … ∪ D_{N-1} with the `pretrain.*` recipe, as
  many steps as the whole chain (e.g. 1,000 + 1,000 steps of 2,048 tokens = 4,096,000 tokens for
  two datasets). Its mixture goes through the same exact assignment as replay: the stage's "own"
  dataset is the last one, and the "replayed" share 1 − b_{N-1}/B is split over D0..D_{N-2} by
  their budgets b_k (B = Σ b_k), so each dataset is read for its budget, once, interleaved evenly.
  Nothing of `warmup`, `lr.*`, `replay` or `schedule` enters it, so it has the same prefix key
  (and is trained once) at every point of a sweep over them.
- `scratch`: the last dataset alone, from random weights, with the continual stage's budget and
  the `pretrain.*` recipe.
- `upstream-only`: stage 0 of the chain alone (the cached D0 model, evaluated on every dataset).
- `merge`: the chain itself, trained by its `cpt` run; the merge trains nothing (cpt/run/merge.py).
"""

from __future__ import annotations

import dataclasses

from cpt.config.schema import RunConfig


def recipe_stages(cfg: RunConfig, chain: list) -> list:
    name = cfg.recipe.name
    if name in ("cpt", "merge"):  # a merge reads the weights of the cpt chain's stages
        return chain
    if name == "upstream-only":
        return chain[:1]
    stage0, last = chain[0], chain[-1]
    if name == "scratch":
        return [dataclasses.replace(last, index=0, schedule=stage0.schedule, replay=0.0,
                                    replay_weights=(), from_scratch=True, from_pre_anneal=False)]
    if name == "union":
        # budgets, not the chain's steps: with model.init the chain's stage 0 trains nothing
        budgets = [d.tokens // cfg.batch.tokens * cfg.batch.tokens for d in cfg.shift.datasets]
        total = sum(budgets)
        steps = total // cfg.batch.tokens
        earlier = budgets[:-1]
        return [dataclasses.replace(last, index=0, steps=steps, tokens=steps * cfg.batch.tokens,
                                    schedule=stage0.schedule, replay=1 - budgets[-1] / total,
                                    replay_weights=tuple(b / sum(earlier) for b in earlier),
                                    from_scratch=True, from_pre_anneal=False)]
    raise ValueError(f"unknown recipe {name!r}")


def stage_label(cfg: RunConfig, stage) -> str:
    """A stage's dataset name, "b from scratch" for scratch, "union of a, b" for a union."""
    names = [d.name for d in cfg.shift.datasets]
    if stage.from_scratch and stage.replay_weights:
        return "union of " + ", ".join(names[: len(stage.replay_weights)] + [names[stage.dataset]])
    if stage.from_scratch and stage.dataset > 0:
        return f"{names[stage.dataset]} from scratch"
    return names[stage.dataset]
