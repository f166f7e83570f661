"""The plan of a run: its stages, their step counts, schedules and replay shares (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from cpt.config import RunConfig
from cpt.schedules import ScheduleSpec


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


def _schedule(cfg: RunConfig, stage_index: int) -> ScheduleSpec:
    if stage_index == 0:
        p = cfg.pretrain
        return ScheduleSpec(p.schedule, p.warmup, p.lr.max, p.lr.max * p.lr.min_ratio)
    return ScheduleSpec(cfg.schedule.name, cfg.warmup, cfg.lr.max, cfg.lr.max * cfg.lr.min_ratio)


def build_plan(cfg: RunConfig) -> list[Stage]:
    """Stage 0 pre-trains on D0; stage k continues on D_k, replaying earlier data.

    Replay is split over earlier datasets in proportion to the fresh (not replayed) tokens each
    contributed so far (2403.08763).
    """
    stages, fresh = [], []
    for k, d in enumerate(cfg.shift.datasets):
        steps = d.tokens // cfg.batch.tokens
        replay = cfg.replay if k > 0 else 0.0
        total_fresh = sum(fresh)
        weights = tuple(f / total_fresh for f in fresh) if k > 0 else ()
        stages.append(Stage(k, k, steps, steps * cfg.batch.tokens, _schedule(cfg, k), replay, weights,
                            from_scratch=k == 0))
        fresh.append(steps * cfg.batch.tokens * (1 - replay))
    return stages


def eval_steps(total_steps: int, warmup_steps: int, interval: int, warmup_interval: int) -> list[int]:
    """Optimizer steps before which every dataset is evaluated: step 0, every `interval`,
    every `warmup_interval` while warming up (and for as long again, where the stability gap
    lives), and after the last step (== total_steps)."""
    steps = set(range(0, total_steps, interval))
    steps.update(range(0, min(total_steps, 2 * warmup_steps), warmup_interval))
    steps.add(total_steps)
    return sorted(steps)
