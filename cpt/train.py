"""Train one stage with a Lightning Trainer (the only place a Trainer is built)."""

from __future__ import annotations

import logging
import warnings

import torch

from cpt.config import RunConfig
from cpt.data.prepare import PreparedData
from cpt.data.windows import StageSequences, TokenWindows, ValWindows
from cpt.model import flops_per_token
from cpt.plan import Stage, eval_steps
from cpt.schedules import anneal_start_step, lr_at, warmup_steps

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")


def accumulation(cfg: RunConfig) -> int:
    per_step = cfg.sequences_per_batch
    ranks = cfg.trainer.devices * cfg.trainer.num_nodes
    return max(1, per_step // (cfg.batch.micro_sequences * ranks))


def val_loaders(cfg: RunConfig, data: PreparedData) -> dict:
    return {
        d.name: torch.utils.data.DataLoader(
            ValWindows(TokenWindows(data.shards[d.name].array("val"), cfg.model.seq_len)),
            batch_size=cfg.batch.micro_sequences)
        for d in cfg.shift.datasets
    }


def stage_sequences(cfg: RunConfig, stage: Stage, data: PreparedData, start: int = 0) -> StageSequences:
    names = [d.name for d in cfg.shift.datasets]
    windows = [TokenWindows(data.shards[n].array("train"), cfg.model.seq_len) for n in names]
    return StageSequences(
        own=windows[stage.dataset], earlier=windows[: len(stage.replay_weights)],
        n_sequences=stage.steps * cfg.sequences_per_batch, replay=stage.replay,
        replay_weights=list(stage.replay_weights), seed=cfg.seed, own_index=stage.dataset,
        stage_index=stage.index, start=start)


def train_stage(cfg: RunConfig, stage: Stage, model, data: PreparedData, sink, token_offset: int,
                title: str, callbacks=(), resume: dict | None = None):
    """Train `model` in place for one stage; returns the StageMetrics callback (its evals).

    callbacks: more Lightning callbacks (PreAnneal, the copy before an anneal; PeriodicCheckpoint;
    tests record the sequence ids consumed with one).
    resume: a checkpoint's state (cpt/resume.py) whose weights are already in `model`: training
    continues at its step with its optimizer, scheduler and callback states.
    """
    import lightning as L

    from cpt.callbacks import StageMetrics, StageProgressBar
    from cpt.lit_module import StageModule

    # Lightning's start-up banners ("GPU available: False", tips) are noise at this scale.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    accum = accumulation(cfg)
    T = stage.steps
    start = resume["step"] if resume else 0  # optimizer steps already done
    module = StageModule(model, lambda t: lr_at(t, T, stage.schedule), T, resume=resume)
    # Step s reads sequences [s·B, (s+1)·B): a resumed stage starts reading at start·B.
    loader = torch.utils.data.DataLoader(stage_sequences(cfg, stage, data, start * cfg.sequences_per_batch),
                                         batch_size=cfg.batch.micro_sequences, shuffle=False, drop_last=True)
    evals_at = eval_steps(T, warmup_steps(stage.schedule, T), cfg.eval.interval_steps, cfg.eval.warmup_interval_steps)
    anneal = anneal_start_step(stage.schedule, T)
    if anneal is not None:  # the pre-anneal model's losses: what the anneal adds on top
        evals_at.append(anneal)
    metrics = StageMetrics(
        sink, val_loaders(cfg, data), evals_at,
        cfg.log_interval_steps, token_offset, cfg.batch.tokens, accum,
        flops_per_token(cfg.model, data.vocab_size), start_step=start)
    all_callbacks = [metrics, StageProgressBar(title), *callbacks]
    for cb in all_callbacks if resume else ():  # Lightning's callback-state protocol
        if cb.state_key in resume["callbacks"]:
            cb.load_state_dict(resume["callbacks"][cb.state_key])
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, precision=cfg.trainer.precision,
        max_steps=T - start, max_epochs=1, accumulate_grad_batches=accum,
        gradient_clip_val=1.0,  # both papers clip the global gradient norm at 1.0
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=all_callbacks,
    )
    trainer.fit(module, loader)
    return metrics
