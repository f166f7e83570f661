"""Which stages a run walks, which one is its own, which are its references (pure).

One rule, used by the run (cpt/run/experiment.py), the skip check of a finished run and the dry
run (cpt/run/dry_run.py):
- `cpt`: the chain's stages but the last are cached prefixes; the last is trained inside the
  run's own MLflow run. Every prefix's end-of-stage loss on its own dataset is a reference of
  `forgetting`, and the run's own stage at step 0 gives the reference of `adaptation`.
- `union`, `scratch`: the chain's stage 0 comes first (the D0 model their forgetting is measured
  against), then the recipe's one stage, cached like a prefix (a sweep over the continual knobs
  trains it once). The chain's stage 0 is their only reference.
- `upstream-only`: stage 0 alone, cached; it is its own reference.
- `merge`: the whole `cpt` chain, every stage cached (the last entry: the final weights a
  `cpt` run keeps, cpt/run/merge.py); the references are the cpt run's.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpt.config.schema import RunConfig
from cpt.plan.identity import prefix_key
from cpt.plan.stages import Stage, chain_plan


@dataclass(frozen=True)
class Step:
    """One cached stage of the walk."""

    key: str  # its prefix key: the cache entry it is stored as
    stage: Stage
    is_reference: bool  # its end-of-stage loss on its own dataset is a reference of `forgetting`


@dataclass(frozen=True)
class Walk:
    cached: tuple[Step, ...]  # in order; the first one's result is the run's stage-0 model
    own: Stage | None  # trained in the run's own MLflow run (cpt), or None: nothing left to train
    shared: tuple[Stage, ...]  # stages whose tokens the run shares with others (compute/tokens)

    def next_stage(self, i: int) -> Stage | None:
        """The stage that starts from the weights of cached step `i`."""
        return self.cached[i + 1].stage if i + 1 < len(self.cached) else self.own


def walk(cfg: RunConfig, stages: list[Stage]) -> Walk:
    """`stages`: the recipe's plan (plan.build_plan)."""
    recipe = cfg.recipe.name
    own = stages[-1] if recipe == "cpt" else None
    steps = [Step(prefix_key(cfg, stages, s.index), s, own is not None)
             for s in (stages[:-1] if own else stages)]
    if recipe in ("union", "scratch"):
        chain = chain_plan(cfg)
        steps.insert(0, Step(prefix_key(cfg, chain, 0), chain[0], True))
    elif recipe == "merge":  # trains nothing: the cpt run's references, its last stage not one
        steps = [Step(s.key, s.stage, i < len(steps) - 1) for i, s in enumerate(steps)]
    elif own is None:  # upstream-only: stage 0 is its own reference
        steps[0] = Step(steps[0].key, steps[0].stage, True)
    shared = stages[:-1] if own else stages if recipe in ("upstream-only", "merge") else []
    return Walk(tuple(steps), own, tuple(shared))
