"""The Lightning side of one stage: loss, AdamW as in both papers, the per-step LR schedule."""

from __future__ import annotations

import lightning as L
import torch

from cpt.dist.full_state import load_optimizer, sharded
from cpt.plan.schedules import ScheduleSpec, lr_at
from cpt.train.loss import causal_lm_loss

# AdamW of both papers (GPT-NeoX configs): β = (0.9, 0.95), ε = 1e-8, weight decay 0.1 on
# matrices only (NeoX exempts biases and LayerNorm parameters).
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.95), 1e-8, 0.1


class StageModule(L.LightningModule):
    def __init__(self, model, schedule: ScheduleSpec, total_steps: int, resume: dict | None = None,
                 fused_loss: bool = True):
        super().__init__()
        self.model = model
        self.fused_loss = fused_loss  # cpt/train/loss.py: off under FSDP
        self.schedule, self.total_steps = schedule, total_steps
        self.resume = resume  # {"optimizer": ..., "scheduler": ...} of a checkpoint, or None
        # Parameter name -> (position, decays?), decided on the plain model: by the time
        # configure_optimizers runs, FSDP has replaced each parameter with a rank's flat 1-D
        # shard, whose shape no longer tells a matrix, and may list them in another order. The
        # plain order numbers the parameters in the optimizer, so a checkpoint's optimizer state
        # means the same under every strategy.
        self._plain = {n: (i, p.ndim >= 2 and "layernorm" not in n.lower())
                       for i, (n, p) in enumerate(model.named_parameters())}
        # The last micro-batch's loss and LR; read by the metrics callback and the progress bar.
        self.last_loss = float("nan")
        self.last_lr = float("nan")

    def forward(self, tokens):
        """The loss of a batch; called through the strategy's wrapper when FSDP shards the model."""
        return causal_lm_loss(self.model, tokens, self.fused_loss)

    def training_step(self, batch, batch_idx):
        tokens, _sources, _ids = batch  # the callbacks read sources and ids from the batch
        # The LR the optimizer applies in this step (the scheduler stepped after the last one).
        self.last_lr = self.optimizers().param_groups[0]["lr"]
        loss = causal_lm_loss(self.model, tokens, self.fused_loss)
        self.last_loss = loss.detach()
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """The global gradient norm is clipped (Trainer's gradient_clip_val). Under FSDP each rank
        holds a shard of the gradients: only the root FSDP module can compute the norm over all of
        them (a collective), and Lightning's FSDP precision plugin refuses to clip by norm."""
        if sharded(self.trainer):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for plain, p in sorted((self._plain[_unwrapped(n)], p) for n, p in self.model.named_parameters()):
            (decay if plain[1] else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=1.0, betas=BETAS, eps=EPS,
        )
        # base lr 1.0, so the lambda *is* the absolute LR of each optimizer step.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(step, self.total_steps, self.schedule))
        if self.resume is not None:
            # AdamW moments and step counts, the LR of the next step, and the scheduler's step
            # (last_epoch = steps done, so its next step() gives lr_at(steps done + 1)).
            # Under FSDP the optimizer holds shards: each rank keeps its own (cpt/dist/full_state.py).
            load_optimizer(self.trainer, opt, self.resume["optimizer"])
            sched.load_state_dict(self.resume["scheduler"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _unwrapped(name: str) -> str:
    """A parameter's name in the plain model (FSDP and its activation checkpointing insert these)."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


@torch.no_grad()
def evaluate(model, loaders: dict[str, torch.utils.data.DataLoader], device, loss_fn=None,
             rank: int = 0, world: int = 1, reduce_sum=None) -> dict[str, float]:
    """Token-weighted mean validation loss of every dataset.

    With world > 1 (DDP) rank r evaluates batches r, r + world, … of each dataset and
    `reduce_sum` (a collective) adds the token-weighted sums over ranks: every rank gets the same
    numbers for 1/world of the work. `loss_fn(tokens)` replaces the plain model where FSDP must
    gather the parameters around each layer's forward; FSDP's forward is itself a collective, so
    there every rank runs every batch (world = 1).
    """
    loss_fn = loss_fn or (lambda tokens: causal_lm_loss(model, tokens))
    was_training = model.training
    model.eval()
    sums = []  # per dataset: loss x tokens, tokens
    for loader in loaders.values():
        total, count = 0.0, 0
        for i, tokens in enumerate(loader):
            if i % world != rank:
                continue
            tokens = tokens.to(device)
            n = tokens[:, 1:].numel()
            total += loss_fn(tokens).item() * n
            count += n
        sums += [total, count]
    model.train(was_training)
    if world > 1:
        sums = reduce_sum(torch.tensor(sums, dtype=torch.float64, device=device)).tolist()
    return {name: sums[2 * k] / sums[2 * k + 1] for k, name in enumerate(loaders)}
