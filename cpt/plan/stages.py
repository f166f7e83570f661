"""The plan of a run: its stages, their step counts, schedules and replay shares (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cpt.config.schema import RunConfig
from cpt.data.mixture import seen_weights
from cpt.plan.schedules import INFINITE, ScheduleSpec, anneal_start_step, stage_spec


@dataclass(frozen=True)
class Stage:
    index: int
    dataset: int  # index into shift.datasets of the data this stage is about
    steps: int  # optimizer steps
    tokens: int  # steps · batch.tokens (the budget rounded down to whole batches)
    schedule: ScheduleSpec
    replay: float  # fraction of sequences re-read from datasets 0..dataset-1
    replay_weights: tuple[float, ...]  # split of the replay share over those datasets
    from_scratch: bool  # random initialisation (else: the previous stage's weights)
    init: str | None = None  # a pretrained checkpoint instead of random weights
    # Start from the previous stage's pre-anneal weights (an infinite schedule continues at
    # η_const from them), not from its annealed, evaluated ones.
    from_pre_anneal: bool = False


def _schedule(cfg: RunConfig, stage_index: int) -> ScheduleSpec:
    s = cfg.schedule
    name, warmup, lr = (cfg.pretrain.schedule, cfg.pretrain.warmup, cfg.pretrain.lr) if stage_index == 0 \
        else (s.name, cfg.warmup, cfg.lr)
    return stage_spec(name, warmup, lr.max, lr.max * lr.min_ratio, continues=stage_index > 0,
                      cooldown=s.cooldown, constant_until=s.constant_until, alpha=s.alpha,
                      lr_const=s.resolved_lr_const(cfg.pretrain.lr), decay=s.decay, decay_shape=s.decay_shape)


def build_plan(cfg: RunConfig) -> list[Stage]:
    """The stages the run's recipe needs (cpt: the chain; see cpt/plan/recipes.py for the baselines)."""
    from cpt.plan.recipes import recipe_stages

    return recipe_stages(cfg, chain_plan(cfg))


def chain_plan(cfg: RunConfig) -> list[Stage]:
    """Stage 0 pre-trains on D0; stage k continues on D_k, replaying earlier data.

    Replay is split over earlier datasets in proportion to the tokens of each the model has
    trained on so far, fresh and replayed (mixture.seen_weights: 2403.08763's worked example).
    """
    budgets = [d.tokens // cfg.batch.tokens for d in cfg.shift.datasets]
    # model.init: stage 0 is the loaded checkpoint (no steps); D0's budget then stands for the
    # checkpoint's own pre-training on D0 when replay is weighed.
    weights = seen_weights([b * cfg.sequences_per_batch for b in budgets], cfg.replay)
    stages = []
    for k, budget in enumerate(budgets):
        init = cfg.model.init if k == 0 else None
        steps = 0 if init else budget
        spec = _schedule(cfg, k)
        # A loaded checkpoint has no pre-anneal weights: the stage after it starts from it.
        pre_anneal = k > 0 and spec.name in INFINITE and not (k == 1 and cfg.model.init)
        stages.append(Stage(k, k, steps, steps * cfg.batch.tokens, spec, cfg.replay if k > 0 else 0.0,
                            weights[k], from_scratch=k == 0 and not init, init=init, from_pre_anneal=pre_anneal))
    return stages


def eval_steps(total_steps: int, warmup_steps: int, interval: int, warmup_interval: int,
               dense_fraction: float = 0.0, dense_evals: int = 0) -> list[int]:
    """Optimizer steps before which every dataset is evaluated: step 0, every `interval`, the
    dense window, every `warmup_interval` while warming up and for as long again, and after the
    last step (== total_steps).

    The dense window is where the stability gap lives (arXiv 2308.04014 Fig. 1: the rise and
    recovery after re-warming), with or without a warm-up: the first `dense_fraction` of the
    stage's steps, stretched to at least `dense_evals` steps, holding at least `dense_evals`
    evaluations evenly spaced from step 0 (every step where the window is shorter)."""
    steps = set(range(0, total_steps, interval))
    steps.update(range(0, min(total_steps, 2 * warmup_steps), warmup_interval))
    if dense_evals > 0:
        window = min(total_steps, max(math.ceil(dense_fraction * total_steps), dense_evals))
        steps.update(range(0, window, max(1, window // dense_evals)))
    steps.add(total_steps)
    return sorted(steps)


def stage_starts(stages: list[Stage], batch_tokens: int) -> list[int]:
    """Tokens the starting weights of each stage have seen since the chain began (the step axis):
    the previous start plus the previous stage's steps, or only its steps before the anneal when
    the stage continues from the pre-anneal weights (the annealed tail is a branch off the chain)."""
    starts = [0]
    for prev, stage in zip(stages, stages[1:]):
        steps = anneal_start_step(prev.schedule, prev.steps) if stage.from_pre_anneal else prev.steps
        starts.append(starts[-1] + steps * batch_tokens)
    return starts
