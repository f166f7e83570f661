"""The exponential moving average of a stage's weights (`ema.decay`), kept while the stage trains.

torch's AveragedModel with its EMA function (`get_ema_multi_avg_fn`): θ_ema ← decay·θ_ema +
(1 − decay)·θ after every optimizer step (the first step copies θ). Lightning's WeightAveraging
callback is not used: it refuses sharded models and swaps the average in during validation,
while cpt evaluates both at every evaluation (cpt/train/callbacks.py) and keeps the average in
its own periodic checkpoints (cpt/train/resume.py), so a killed stage resumes it exactly.

What is averaged is what this rank trains: under DDP (and on one device) the whole model, on
every rank (they hold the same weights, so the same average); under FSDP this rank's shards
(FSDP's views of them between steps), one shard's memory. The shards are gathered, evaluated and
loaded with FSDP's own collectives by lending them to the FSDP model for a moment (`lent`): its
trained shards are kept aside and copied back after, and FSDP's gathered copies are dropped
before and after (it would reuse the root unit's from an evaluation: cpt/dist/full_state.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import lightning as L
import torch

from cpt.dist.full_state import drop_gathered, full_weights, load_full_weights, sharded


class _Tensors(torch.nn.Module):
    """The given tensors as a module's parameters, in order (sharing their memory), and no
    buffers: what AveragedModel copies and averages where the weights are FSDP's shards rather
    than a model (it would also copy the FSDP model's buffers into the copy's)."""

    def __init__(self, tensors):
        super().__init__()
        self.tensors = torch.nn.ParameterList([torch.nn.Parameter(t.detach(), requires_grad=False) for t in tensors])


class StageEMA(L.Callback):
    """The average of one stage; `use`: it is the stage's final model (cpt/train/trainer.py).

    It goes before PeriodicCheckpoint in the callback list, so a checkpoint taken after a step
    (the signal path) holds the average of that step."""

    def __init__(self, decay: float, use: bool = False):
        self.decay, self.use = decay, use
        self.averaged = None  # AveragedModel, built once the strategy has set the model up
        self._resumed: dict | None = None  # a checkpoint's state, loaded into it then

    @staticmethod
    def _trained(trainer, module) -> torch.nn.Module:
        """A module whose parameters are what this rank trains: the model, or under FSDP its shards."""
        return _Tensors(trainer.strategy.model.parameters()) if sharded(trainer) else module.model

    def on_train_start(self, trainer, module):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.averaged = AveragedModel(self._trained(trainer, module), multi_avg_fn=get_ema_multi_avg_fn(self.decay))
        if self._resumed is not None:
            self._load(trainer, module, self._resumed)
            self._resumed = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:  # after the optimizer step
            self.averaged.update_parameters(self._trained(trainer, module))

    @contextmanager
    def lent(self, trainer, module):
        """The model that holds the average for the duration: its own copy, or under FSDP the
        FSDP model with the average in its shards (evaluate it through the FSDP model)."""
        if not sharded(trainer):
            yield self.averaged.module
            return
        with _shards_kept(trainer) as live:
            _copy(live, self.averaged.parameters())
            yield module.model

    def full_weights(self, trainer, module) -> dict:
        """The average as the plain model's state_dict (rank 0; under FSDP a collective, {} off rank 0)."""
        if not sharded(trainer):
            return self.averaged.module.state_dict()
        with self.lent(trainer, module):
            return full_weights(trainer, module)

    def checkpoint_state(self, trainer, module) -> dict:
        """What a checkpoint holds: the average gathered like the weights, and how many steps it
        has averaged (its first update copies). A collective under FSDP."""
        return {"weights": self.full_weights(trainer, module), "n_averaged": int(self.averaged.n_averaged)}

    def load_state_dict(self, state: dict) -> None:
        self._resumed = state  # the model is not set up yet: loaded in on_train_start

    def _load(self, trainer, module, state: dict) -> None:
        self.averaged.n_averaged.fill_(state["n_averaged"])
        if not sharded(trainer):
            self.averaged.module.load_state_dict(state["weights"])
            return
        with _shards_kept(trainer) as live:  # FSDP keeps this rank's shard of the full state
            load_full_weights(trainer, state["weights"])
            _copy(self.averaged.parameters(), live)

    def release(self) -> None:
        """Free the copy once the stage's final weights are taken (its losses stay in StageMetrics)."""
        self.averaged = None


@contextmanager
def _shards_kept(trainer):
    """This rank's trained shards (yielded), copied back on exit. FSDP's gathered copies of them
    are dropped at both ends: what runs inside, and training after, gather what the shards hold."""
    live = list(trainer.strategy.model.parameters())
    kept = [t.detach().clone() for t in live]
    drop_gathered(trainer)
    try:
        yield live
    finally:
        _copy(live, kept)
        drop_gathered(trainer)


@torch.no_grad()
def _copy(dst, src) -> None:
    for d, s in zip(dst, src, strict=True):
        d.copy_(s)
