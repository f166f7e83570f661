"""The global batch split over devices and micro-batches, and which sequences each rank reads.

Pure arithmetic. The global batch is fixed in tokens (`batch.tokens`, the papers' 1104 · 2048
≈ 2.26M); it is the same on 1 device or 512, so a run's weights do not depend on the machine:

    sequences per step  g = batch.tokens / model.seq_len      (2,260,992 / 2048 = 1104)
    per rank per step   p = g / (devices · num_nodes)         (1104 / 8 GPUs = 138)
    micro-batch         m = min(batch.micro_sequences, p)     (6; it must divide p: 138 = 6 · 23)
    accumulation        A = p / m                             (23 forward passes per step)

Step t of a stage is sequences [t·g, (t+1)·g) of its StageSequences, in order, on any number
of ranks: rank r reads the contiguous block [t·g + r·p, t·g + (r+1)·p). Every micro-batch holds
m full windows of seq_len tokens, so the mean of the ranks' means of the micro-batch means is the
mean over the global batch, as on one device: same loss, same gradient, same replay fraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from cpt.errors import UserError


@dataclass(frozen=True)
class BatchLayout:
    sequences: int  # g: sequences per optimizer step, all ranks together
    world: int  # devices · num_nodes
    micro: int  # m: sequences per rank per forward pass
    accumulation: int  # A: forward passes per rank per optimizer step

    @property
    def per_rank(self) -> int:
        return self.micro * self.accumulation


def batch_layout(batch_tokens: int, seq_len: int, micro_sequences: int, devices: int,
                 num_nodes: int) -> BatchLayout:
    """Raises UserError (one line) when the global batch does not split evenly."""
    world = devices * num_nodes
    if batch_tokens <= 0 or batch_tokens % (seq_len * world):
        raise UserError(
            f"batch.tokens={batch_tokens}: allowed a positive multiple of model.seq_len · trainer.devices · "
            f"trainer.num_nodes = {seq_len}·{devices}·{num_nodes} = {seq_len * world} "
            "(every device reads the same number of whole sequences each step)")
    g = batch_tokens // seq_len
    p = g // world
    m = min(micro_sequences, p)
    if micro_sequences <= 0 or p % m:
        raise UserError(
            f"batch.micro_sequences={micro_sequences}: allowed a divisor of the {p} sequences each of the {world} "
            f"device(s) reads per step (batch.tokens={batch_tokens} / model.seq_len={seq_len} / {world}), "
            f"or any value >= {p}")
    return BatchLayout(g, world, m, p // m)


def rank_indices(step: int, rank: int, layout: BatchLayout) -> range:
    """The sequences rank `rank` reads in optimizer step `step` of a stage."""
    start = step * layout.sequences + rank * layout.per_rank
    return range(start, start + layout.per_rank)


class RankSampler:
    """Indices of a stage's sequences for one rank, step after step (see the module docstring).

    Replaces Lightning's DistributedSampler (`use_distributed_sampler=False`), which would
    shuffle, pad to equal length and interleave ranks (rank r reads r, r+W, r+2W, ...): all
    three would change which sequences form step t. (A plain iterable: DataLoader takes one, and
    this module stays free of torch, which `cpt plan` never imports.)
    """

    def __init__(self, steps: int, layout: BatchLayout, rank: int, first_step: int = 0):
        self.steps, self.layout, self.rank, self.first_step = steps, layout, rank, first_step

    def __len__(self) -> int:
        return (self.steps - self.first_step) * self.layout.per_rank

    def __iter__(self) -> Iterator[int]:
        for t in range(self.first_step, self.steps):
            yield from rank_indices(t, self.rank, self.layout)
