"""Train one stage with a Lightning Trainer (the only place a Trainer is built)."""

from __future__ import annotations

import copy
import logging
import warnings

import torch

from cpt.config.schema import RunConfig
from cpt.data.prepare import PreparedData
from cpt.data.windows import StageSequences, TokenWindows, ValWindows
from cpt.plan.batching import RankSampler
from cpt.dist.full_state import full_weights
from cpt.model.spec import flops_per_token
from cpt.plan.stages import Stage, eval_steps
from cpt.dist.strategy import build_strategy, layout, peak_flops
from cpt.plan.schedules import anneal_start_step, warmup_steps

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")


def accumulation(cfg: RunConfig) -> int:
    """Forward passes per rank per optimizer step (cpt/plan/batching.py has the arithmetic)."""
    return layout(cfg).accumulation


def windows_of(data: PreparedData, name: str, split: str, seq_len: int) -> TokenWindows:
    shard = data.shards[name]
    return TokenWindows(shard.array(split), seq_len, data.vocab_size, str(shard.path / f"{split}.bin"))


def val_loaders(cfg: RunConfig, data: PreparedData) -> dict:
    return {
        d.name: torch.utils.data.DataLoader(
            ValWindows(windows_of(data, d.name, "val", cfg.model.seq_len)),
            batch_size=cfg.batch.micro_sequences)
        for d in cfg.shift.datasets
    }


def stage_sequences(cfg: RunConfig, stage: Stage, data: PreparedData, start: int = 0) -> StageSequences:
    names = [d.name for d in cfg.shift.datasets]
    windows = [windows_of(data, n, "train", cfg.model.seq_len) for n in names]
    return StageSequences(
        own=windows[stage.dataset], earlier=windows[: len(stage.replay_weights)],
        n_sequences=stage.steps * cfg.sequences_per_batch, replay=stage.replay,
        replay_weights=list(stage.replay_weights), seed=cfg.seed, own_index=stage.dataset,
        stage_index=stage.index, start=start)


def train_stage(cfg: RunConfig, stage: Stage, model, data: PreparedData, sink, token_offset: int,
                title: str, callbacks=(), resume: dict | None = None):
    """Train `model` in place for one stage; returns the StageMetrics callback (its evals).

    callbacks: more Lightning callbacks (PreAnneal, the copy before an anneal; PeriodicCheckpoint;
    tests record the sequence ids consumed with one). With ema.decay a StageEMA (cpt/train/ema.py)
    goes before them, and with ema.use its average is the model left in `model`.
    resume: a checkpoint's state (cpt/train/resume.py) whose weights are already in `model`:
    training continues at its step with its optimizer, scheduler and callback states.
    """
    import lightning as L

    from cpt.train.callbacks import StageProgressBar
    from cpt.train.ema import StageEMA

    # Lightning's start-up banners ("GPU available: False", tips) are noise at this scale.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    lay, t = layout(cfg), cfg.trainer
    start = resume["step"] if resume else 0  # optimizer steps already done
    fsdp = t.strategy == "fsdp"
    work, module = _module(cfg, stage, model, resume, fsdp)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    ema = StageEMA(cfg.ema.decay, cfg.ema.use) if cfg.ema.decay is not None else None
    metrics = _metrics(cfg, stage, data, sink, token_offset, start, rank, ema)
    all_callbacks = [metrics, StageProgressBar(title), *([ema] if ema else []), *callbacks]
    for cb in all_callbacks if resume else ():  # Lightning's callback-state protocol
        if cb.state_key in resume["callbacks"]:
            cb.load_state_dict(resume["callbacks"][cb.state_key])
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=build_strategy(t), precision=t.precision, use_distributed_sampler=False,
        max_steps=stage.steps - start, max_epochs=1, accumulate_grad_batches=lay.accumulation,
        gradient_clip_val=1.0,  # both papers clip the global gradient norm at 1.0
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=all_callbacks, plugins=_cluster_plugins(),
    )
    trainer.fit(module, _loader(cfg, stage, data, start, rank))
    _final_weights(trainer, module, model, ema, fsdp)
    if t.activation_checkpointing and not fsdp:
        model.gradient_checkpointing_disable()
    return metrics


def _final_weights(trainer, module, model, ema, fsdp: bool) -> None:
    """Leave the stage's final model in `model`: the moving average with ema.use, else the trained
    weights. Under FSDP they gather on rank 0 (a collective: every rank calls it) from the copy
    FSDP trained; elsewhere `model` trained in place, on every rank."""
    if ema is not None and ema.use:
        state = ema.full_weights(trainer, module)
    else:
        state = full_weights(trainer, module) if fsdp else None
    if state is not None and (trainer.is_global_zero or not fsdp):
        model.load_state_dict(state)
    if ema is not None:
        ema.release()


def _cluster_plugins() -> list:
    """Under SLURM, Lightning's own requeue off: cpt checkpoints and requeues (cpt/signals.py)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _module(cfg: RunConfig, stage: Stage, model, resume: dict | None, fsdp: bool):
    """(the model trained, its LightningModule). FSDP wraps the modules it trains in place: it
    trains a copy, whose weights train_stage copies back."""
    from cpt.train.module import StageModule

    t = cfg.trainer
    work = copy.deepcopy(model) if fsdp else model
    if t.activation_checkpointing and not fsdp:  # FSDP checkpoints per layer through its policy
        work.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if t.compile:  # in place (state_dict keys stay those of the plain model); the body only, as the
        work.base_model.compile()  # fused loss (cpt/train/loss.py) calls the body and the output layer apart
    return work, StageModule(work, stage.schedule, stage.steps, resume=resume, fused_loss=not fsdp)


def _loader(cfg: RunConfig, stage: Stage, data: PreparedData, start: int, rank: int):
    """Step s reads sequences [s·B, (s+1)·B): a resumed stage starts reading at start·B. Each rank
    reads its own contiguous block of every step's global batch, in order (cpt/plan/batching.py);
    Lightning's DistributedSampler is switched off."""
    lay = layout(cfg)
    return torch.utils.data.DataLoader(stage_sequences(cfg, stage, data, start * cfg.sequences_per_batch),
                                       batch_size=lay.micro, sampler=RankSampler(stage.steps - start, lay, rank))


def _metrics(cfg: RunConfig, stage: Stage, data: PreparedData, sink, token_offset: int, start: int, rank: int,
             ema=None):
    from cpt.train.callbacks import MetricsSpec, StageMetrics

    T, lay = stage.steps, layout(cfg)
    e = cfg.eval
    evals_at = eval_steps(T, warmup_steps(stage.schedule, T), e.interval_steps, e.warmup_interval_steps,
                          e.dense_fraction, e.dense_evals)
    anneal = anneal_start_step(stage.schedule, T)
    if anneal is not None:  # the pre-anneal model's losses: what the anneal adds on top
        evals_at.append(anneal)
    peak = peak_flops(cfg.trainer)
    spec = MetricsSpec(evals_at, cfg.log_interval_steps, token_offset, cfg.batch.tokens, lay.accumulation,
                       flops_per_token(cfg.model, data.vocab_size), peak * lay.world if peak else None)
    return StageMetrics(sink, val_loaders(cfg, data), spec, start_step=start, rank=rank, ema=ema)
