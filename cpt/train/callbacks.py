"""Lightning callbacks of a stage: evaluation on every dataset, batched metrics, a progress bar."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from cpt.dist.full_state import full_weights, sharded
from cpt.train.module import evaluate

Sink = Callable[[dict[str, float], int], None]  # (metrics, tokens since the start of the chain)


def stage_step(trainer) -> int:
    """Optimizer steps of the stage done so far, counted from the stage's start even when it was
    resumed from a checkpoint (Lightning's global_step then counts from 0 again)."""
    return next(c for c in trainer.callbacks if isinstance(c, StageMetrics)).step(trainer)


@dataclass(frozen=True)
class MetricsSpec:
    """When a stage is evaluated and how its metrics are counted."""

    eval_at: list[int]  # optimizer steps before which every dataset is evaluated (plan.eval_steps)
    log_interval: int  # train/* and perf/* every this many optimizer steps
    token_offset: int  # tokens the stage's starting weights have seen (the step axis starts there)
    batch_tokens: int  # tokens per optimizer step
    accumulate: int  # micro-batches per optimizer step on each rank
    flops_per_token: float
    peak_flops: float | None = None  # of all devices together; None: no perf/mfu


class StageMetrics(L.Callback):
    """Evaluates before the optimizer steps in `eval_at` (and after the last one), and sends
    train/loss, train/lr, train/replay_fraction and perf/* to `sink` every `log_interval` steps.

    Step axis: tokens since the start of the chain = token_offset + step · batch_tokens.
    train/replay_fraction: of the sequences this stage has trained on so far, the share read
    from another dataset than the stage's own, counted from the source of every sequence in
    every batch the model consumed (for a union: the share of all but the last dataset).
    Steps are the stage's own: a stage resumed at `start_step` counts on from there, while
    Lightning's global_step counts from 0 again.

    With `ema` (cpt/train/ema.py, `ema.decay`) every evaluation also evaluates the moving
    average of the weights, val/<dataset>/loss_ema at the same step (`evals_ema`).

    Each rank counts the sequences it reads itself (`replayed`, `consumed`); the logged fraction
    sums them over the ranks. A checkpoint holds the sums (`checkpoint_state`), and on resume
    rank 0 (`rank`) starts from them while the other ranks start from 0, so the sum over ranks is
    the whole stage's count again (each rank loading the sums would count them world times).
    """

    def __init__(self, sink: Sink, val_loaders, spec: MetricsSpec, start_step: int = 0, rank: int = 0, ema=None):
        self.start, self.rank, self.ema = start_step, rank, ema  # ema: cpt/train/ema.py StageEMA, or None
        self.sink, self.val_loaders, self.eval_at = sink, val_loaders, set(spec.eval_at)
        self.log_interval, self.offset, self.batch_tokens = spec.log_interval, spec.token_offset, spec.batch_tokens
        self.accumulate, self.flops_per_token, self.peak_flops = spec.accumulate, spec.flops_per_token, spec.peak_flops
        self.evals: dict[int, dict[str, float]] = {}  # step -> {dataset: loss}
        self.evals_ema: dict[int, dict[str, float]] = {}  # the same of the moving average (ema.decay)
        self.replayed = self.consumed = 0
        self._loss_sum, self._loss_n = 0.0, 0
        self._t0, self._tok0 = None, 0

    def step(self, trainer) -> int:
        """Optimizer steps of this stage done so far."""
        return self.start + trainer.global_step

    def state_dict(self) -> dict:
        """This rank's state (Lightning's protocol); a checkpoint holds `checkpoint_state`."""
        return {"evals": self.evals, "evals_ema": self.evals_ema, "replayed": self.replayed, "consumed": self.consumed}

    def checkpoint_state(self, trainer, module) -> dict:
        """What a checkpoint needs to continue the metrics exactly (taken between optimizer steps):
        the evaluations (the same on every rank) and the counters summed over the ranks. A
        collective: every rank calls it at the same step."""
        replayed, consumed = self._sum(trainer, module, [self.replayed, self.consumed])
        return {**self.state_dict(), "replayed": int(replayed), "consumed": int(consumed)}

    def load_state_dict(self, state: dict) -> None:
        """`state`: a `checkpoint_state` (counts of all ranks); rank 0 alone carries them on."""
        self.evals = {int(k): dict(v) for k, v in state["evals"].items()}
        self.evals_ema = {int(k): dict(v) for k, v in state.get("evals_ema", {}).items()}
        self.replayed, self.consumed = (int(state["replayed"]), int(state["consumed"])) if self.rank == 0 else (0, 0)

    def _tokens(self, step: int) -> int:
        return self.offset + step * self.batch_tokens

    def final(self, steps: int) -> dict[str, float]:
        """The losses of the stage's model at its end: the average's where it is that model (ema.use)."""
        return self.evals_ema[steps] if self.ema is not None and self.ema.use else self.evals[steps]

    def _evaluate(self, trainer, module, step: int) -> None:
        self.evals[step] = self._losses(trainer, module, module.model)
        logged = {f"val/{n}/loss": v for n, v in self.evals[step].items()}
        if self.ema is not None:  # the average beside the trained weights, logged at the same step
            with self.ema.lent(trainer, module) as averaged:
                self.evals_ema[step] = self._losses(trainer, module, averaged)
            logged.update({f"val/{n}/loss_ema": v for n, v in self.evals_ema[step].items()})
        self.sink(logged, self._tokens(step))

    def _losses(self, trainer, module, model) -> dict[str, float]:
        fsdp = sharded(trainer)
        world = 1 if fsdp else trainer.world_size  # (see evaluate: FSDP ranks run every batch)
        return evaluate(model, self.val_loaders, module.device, loss_fn=trainer.strategy.model if fsdp else None,
                        rank=trainer.global_rank if world > 1 else 0, world=world,
                        reduce_sum=lambda t: trainer.strategy.reduce(t, reduce_op="sum"))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        step = self.step(trainer)
        if batch_idx % self.accumulate == 0 and step in self.eval_at and step not in self.evals:
            self._evaluate(trainer, module, step)
            self._t0 = None  # evaluation time is not training throughput

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        loss = float(module.last_loss)
        if not math.isfinite(loss):  # (after a step boundary global_step already counts this step)
            at = self.step(trainer) - (1 if (batch_idx + 1) % self.accumulate == 0 else 0)
            raise FloatingPointError(f"loss is {loss} at step {at}")
        self._loss_sum += loss
        self._loss_n += 1
        sources = batch[1]  # (tokens, sources, ids): sources[i] >= 0 where sequence i is replayed
        self.replayed += int((sources >= 0).sum())
        self.consumed += int(sources.numel())
        if (batch_idx + 1) % self.accumulate:
            return
        step = self.step(trainer) - 1  # the optimizer step that just ran
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._tok0 = now, step
        if step % self.log_interval == 0:
            loss, replay_fraction = self._over_ranks(trainer, module)
            m = {"train/loss": loss, "train/lr": module.last_lr, "train/replay_fraction": replay_fraction}
            if now > self._t0 and step > self._tok0:
                tps = (step - self._tok0) * self.batch_tokens / (now - self._t0)
                m["perf/tokens_per_s"] = tps
                if self.peak_flops:
                    m["perf/mfu"] = tps * self.flops_per_token / self.peak_flops
                self._t0, self._tok0 = now, step
            self.sink(m, self._tokens(step))
        self._loss_sum, self._loss_n = 0.0, 0

    def _over_ranks(self, trainer, module) -> tuple[float, float]:
        """This step's mean loss and the replay fraction so far, over the sequences of all
        ranks (a collective: every rank logs at the same steps)."""
        loss_sum, n, replayed, consumed = self._sum(trainer, module, [self._loss_sum, self._loss_n,
                                                                      self.replayed, self.consumed])
        return loss_sum / n, replayed / consumed

    @staticmethod
    def _sum(trainer, module, values: list[float]) -> list[float]:
        """`values` summed over the ranks (float64: counts stay exact below 2^53)."""
        import torch

        sums = torch.tensor(values, dtype=torch.float64, device=module.device)
        if trainer.world_size > 1:
            sums = trainer.strategy.reduce(sums, reduce_op="sum")
        return sums.tolist()

    def on_train_end(self, trainer, module):
        if self.step(trainer) not in self.evals:
            self._evaluate(trainer, module, self.step(trainer))


class StageProgressBar(TQDMProgressBar):
    """Lightning's bar, titled with the stage and showing loss and LR instead of the version."""

    def __init__(self, title: str):
        super().__init__(refresh_rate=25)
        self.title = title

    def init_train_tqdm(self):
        bar = super().init_train_tqdm()
        bar.set_description(self.title)
        return bar

    def on_train_epoch_start(self, trainer, module):
        super().on_train_epoch_start(trainer, module)
        self.train_progress_bar.set_description(self.title)

    def get_metrics(self, trainer, module):
        return {"loss": f"{float(module.last_loss):.3f}", "lr": f"{module.last_lr:.2e}"}


class PreAnneal(L.Callback):
    """Copies the weights before optimizer step `at_step` (the first step of an anneal) to CPU:
    the checkpoint the next stage of an infinite schedule continues from. If the anneal has no
    whole step (at_step == T) the copy is the final weights. The first micro-batch of that step
    comes before its update, so the copy is taken there whatever the gradient accumulation.
    Under FSDP the copy is gathered on rank 0 (every rank takes it at the same step; the
    others keep {}, which only rank 0 stores anyway)."""

    def __init__(self, at_step: int):
        self.at_step = at_step
        self.weights: dict | None = None

    def _take(self, trainer, module) -> None:
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in full_weights(trainer, module).items()}

    def state_dict(self) -> dict:  # a stage resumed past at_step gets its copy from the checkpoint
        return {"weights": self.weights} if self.weights is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.weights = state.get("weights")

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.weights is None and stage_step(trainer) == self.at_step:
            self._take(trainer, module)

    def on_train_end(self, trainer, module):
        if self.weights is None:
            self._take(trainer, module)
