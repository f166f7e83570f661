"""The Lightning side of one stage: loss, AdamW as in both papers, the per-step LR schedule."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch

from cpt.loss import causal_lm_loss

# AdamW of both papers (GPT-NeoX configs): β = (0.9, 0.95), ε = 1e-8, weight decay 0.1 on
# matrices only (NeoX exempts biases and LayerNorm parameters).
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.95), 1e-8, 0.1


class StageModule(L.LightningModule):
    def __init__(self, model, lr_at: Callable[[int], float], total_steps: int, resume: dict | None = None,
                 fused_loss: bool = True):
        super().__init__()
        self.model = model
        self.fused_loss = fused_loss  # cpt/loss.py: off under FSDP
        self.lr_at, self.total_steps = lr_at, total_steps
        self.resume = resume  # {"optimizer": ..., "scheduler": ...} of a checkpoint, or None
        # What the last micro-batch saw; read by the metrics callback after each batch.
        self.last_loss = float("nan")
        self.last_lr = float("nan")
        self.last_sources: torch.Tensor | None = None
        self.last_ids: torch.Tensor | None = None  # sequence ids of the stage (windows.StageSequences)

    def forward(self, tokens):
        """The loss of a batch; called through the strategy's wrapper when FSDP shards the model."""
        return causal_lm_loss(self.model, tokens, self.fused_loss)

    def training_step(self, batch, batch_idx):
        tokens, sources, ids = batch
        # The LR the optimizer applies in this step (the scheduler stepped after the last one).
        self.last_lr = self.optimizers().param_groups[0]["lr"]
        loss = causal_lm_loss(self.model, tokens, self.fused_loss)
        self.last_loss = loss.detach()
        self.last_sources, self.last_ids = sources, ids
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (decay if p.ndim >= 2 and "layernorm" not in name.lower() else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=1.0, betas=BETAS, eps=EPS,
        )
        # base lr 1.0, so the lambda *is* the absolute LR of each optimizer step.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_at(step))
        if self.resume is not None:
            # AdamW moments and step counts, the LR of the next step, and the scheduler's step
            # (last_epoch = steps done, so its next step() gives lr_at(steps done + 1)).
            opt.load_state_dict(self.resume["optimizer"])
            sched.load_state_dict(self.resume["scheduler"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
