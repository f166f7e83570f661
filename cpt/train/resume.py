"""A stage that survives a crash: periodic checkpoints while it trains, and on the next start
the same stage, step, data order, LR, optimizer state and MLflow run.

Why the result equals an uninterrupted run: a checkpoint is taken between optimizer steps and
holds everything the next step reads — weights, AdamW moments and step counts, the scheduler's
step (the LR is a pure function of it), the callbacks' state (evaluations so far, counters, the
pre-anneal copy of an infinite schedule, the moving average of `ema.decay`) — and the data of step s is sequences [s·B, (s+1)·B) of StageSequences, a pure function of the
index (`start`). Nothing else carries state from one step to the next (dropout is 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import lightning as L
import torch

from cpt import faults, signals
from cpt.train.callbacks import StageMetrics
from cpt.dist.full_state import full_optimizer, full_weights
from cpt.store.stage_checkpoints import StageCheckpoints, load_state_dict_checked, starting_point
from cpt.errors import Preempted, TrainingDiverged, UserError
from cpt.store.run_status import run_status


def checkpoints_for(cfg, name: str) -> StageCheckpoints:
    """name: prefix-<prefix key> or run-<run key> (derived from the identity, see stage_checkpoints.py)."""
    return StageCheckpoints(cfg.paths.root / "checkpoints" / name)


class PeriodicCheckpoint(L.Callback):
    """Saves the stage every `interval` optimizer steps, before the step runs (after its evaluation).

    It goes last in the callback list: the states of the others (Lightning's state_dict protocol:
    StageMetrics' evaluations and counters, PreAnneal's copy, StageEMA's average) are saved with it. Before each save
    the MLflow buffer is flushed, so a checkpoint never claims steps whose metrics could be lost.
    """

    def __init__(self, store: StageCheckpoints, interval: int, keep_last: int, meta: dict, before_save):
        self.store, self.interval, self.keep_last = store, interval, keep_last
        self.meta, self.before_save = meta, before_save

    def on_train_start(self, trainer, module):
        signals.install()  # over the SIGTERM handler Lightning registered at fit start

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        m = next(c for c in trainer.callbacks if isinstance(c, StageMetrics))
        step = m.step(trainer)
        if not self.interval or batch_idx % m.accumulate or step == m.start or step % self.interval:
            return
        self._save(trainer, module, step)

    def _save(self, trainer, module, step: int) -> None:
        self.before_save()
        # Collectives first, on every rank, in the same order: the callbacks' `checkpoint_state`
        # (the metrics' counts of all ranks, the EMA gathered), and under FSDP the full weights
        # and optimizer state gathered from the shards (cpt/dist/full_state.py).
        callbacks = {c.state_key: c.checkpoint_state(trainer, module) if hasattr(c, "checkpoint_state")
                     else c.state_dict() for c in trainer.callbacks if c is not self}
        model, optimizer = full_weights(trainer, module), full_optimizer(trainer, trainer.optimizers[0])
        if trainer.is_global_zero:
            state = {"step": step, "model": model, "optimizer": optimizer,
                     "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
                     "callbacks": {k: v for k, v in callbacks.items() if v}, "rng": torch.get_rng_state()}
            self.store.save(step, state, self.meta, self.keep_last)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        m = next(c for c in trainer.callbacks if isinstance(c, StageMetrics))
        if (batch_idx + 1) % m.accumulate:
            return
        faults.reached("step")
        signum = signals.agreed(module.device)
        # A signal in the stage's last step: the stage finishes and is stored; signals.check stops after.
        if signum is not None and trainer.global_step < trainer.max_steps:
            step = m.step(trainer)
            self._save(trainer, module, step)  # its evaluation at `step`, if due, runs on resume
            raise signals.stopped(signum, f"stopped after step {step} of {m.start + trainer.max_steps}, "
                                 f"checkpoint written in {self.store.root}")


@dataclass
class StageRun:
    log: object  # tracking.RunLog, open: the caller ends it once the stage's result is stored
    metrics: object  # callbacks.StageMetrics: evals by step
    checkpoints: StageCheckpoints
    reopened: bool  # the MLflow run existed already (a resumed stage)


@dataclass(frozen=True)
class StageSpec:
    """One stage to train, as its MLflow run and its checkpoints know it."""

    stage: object  # plan.stages.Stage
    checkpoints: str  # prefix-<prefix key> or run-<run key>: the folder of its periodic checkpoints
    run_name: str  # its MLflow run's name
    tags: dict  # its MLflow run's tags
    offset: int  # tokens the starting weights have seen since the chain began (the step axis)
    title: str  # "stage 1 syn-en-b": the progress bar and messages


def train_resumable(job, spec: StageSpec, model, callbacks=()) -> StageRun:
    """Train `spec.stage` into `model`, continuing from its last checkpoint if there is one.
    `job`: the run's shared context (cpt/run/job.py: cfg, data, tracker, params, say).
    `callbacks`: more Lightning callbacks for train_stage (their state_dict is checkpointed).

    The checkpoint is read and checked before MLflow is touched, so a bad one changes nothing.
    """
    from cpt.train.trainer import train_stage

    cfg, stage = job.cfg, spec.stage
    signals.check(f"{spec.title} not started (the stage before it is stored)")  # a signal in that stage's last step
    store = checkpoints_for(cfg, spec.checkpoints)
    store.discard_partial()
    latest = store.latest()
    vocab_rows = model.get_input_embeddings().weight.shape[0]
    meta = {"stage": stage.index, "model": dataclasses.asdict(cfg.model), "vocab_rows": vocab_rows}
    state = None
    if starting_point(latest, stage.init, stage.from_scratch) == "checkpoint":
        # Over whatever the caller loaded (model.init, the previous stage): the run's own wins.
        latest, state = store.load_newest(meta, job.say)  # past a damaged newest one, if an older loads
        load_state_dict_checked(model, state["model"], store.root / f"step-{latest:08d}")
        if "rng" in state:
            torch.set_rng_state(state["rng"])
        job.say(f"{spec.title}: resuming from its checkpoint at step {latest} of {stage.steps} ({store.root})")
    check_room(store, model, cfg.checkpoint, with_ema=cfg.ema.decay is not None)
    resumed_tags = {"cpt.resumed_from_step": latest} if latest is not None else {}
    log, reopened = _open_run(store, job.tracker, spec.run_name, job.params, spec.tags, resumed_tags)
    if reopened:
        job.say(f"{spec.title}: continuing MLflow run {log.run_id}")
    log.log_inputs(job.inputs(stage))
    try:
        with run_status(log, finish=False):
            saver = PeriodicCheckpoint(store, cfg.checkpoint.interval_steps, cfg.checkpoint.keep_last, meta,
                                       log.flush)
            with signals.deferred():
                cb = train_stage(cfg, stage, model, job.data, log.log_metrics, spec.offset, spec.title,
                                 callbacks=[*callbacks, saver], resume=state)
    except Preempted as e:
        raise Preempted(f"{spec.title} {e}; MLflow run {log.run_id} is marked KILLED", e.signum) from None
    except FloatingPointError as e:
        raise TrainingDiverged(f"{spec.title}: {e}; stopped: MLflow run {log.run_id} is marked FAILED and "
                               f"nothing was cached; allowed: a finite loss (lower the LR or check the data)") from None
    return StageRun(log, cb, store, reopened)


def check_room(store: StageCheckpoints, model, checkpoint, with_ema: bool = False) -> None:
    """Before the stage writes anything: room for its checkpoints (weights + AdamW's two moments,
    + the EMA's copy of the weights when on; `keep_last` of them plus the one being written) and
    its cached weights at the end. A full disk met mid-write would leave tracebacks and a
    RUNNING MLflow run instead."""
    from cpt.store.writable import check_free_space

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    moments = 2 * sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)  # fp32 exp_avg, exp_avg_sq
    held = len(store.steps()) if checkpoint.interval_steps else 0
    copies = max(checkpoint.keep_last + 1 - held, 0) if checkpoint.interval_steps else 0
    check_free_space(store.root, copies * ((2 if with_ema else 1) * weights + moments) + weights,
                     f"this stage ({copies} checkpoints and its cached weights)")


def _open_run(store: StageCheckpoints, tracker, run_name, params, tags, resumed_tags):
    """Reopen the MLflow run recorded beside the checkpoints, or start one and record it."""
    rec = store.recorded_run()
    if rec and rec.get("tracking_uri") == tracker.uri and rec.get("experiment_id") == tracker.experiment_id:
        log = tracker.reopen(rec["run_id"], resumed_tags)
        if log is not None:  # it keeps its parent; this sweep joins its list of sweeps
            tracker.join_sweep(log.run_id, tags.get("cpt.sweep_id", ""))
            return log, True
    log = tracker.start_run(run_name, params, {**tags, **resumed_tags})
    if log.run_id:  # not on ranks > 0 (cpt/dist/ranks.py): they log nothing, rank 0 records its run
        store.record_run({"run_id": log.run_id, "tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id})
    return log, False


def tidy_leftover(store: StageCheckpoints, tracker) -> None:
    """Checkpoints of a stage whose result is stored already: a kill came between storing it and
    deleting them. Close the run they logged to (it trained to the end) and delete them."""
    if not store.root.exists():
        return
    try:
        rec = store.recorded_run()
    except UserError:  # an unreadable record: the checkpoints go all the same
        rec = None
    if rec and rec.get("tracking_uri") == tracker.uri:
        tracker.finish_if_running(rec["run_id"])
    store.clear()

