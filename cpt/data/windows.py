"""Torch datasets over token shards: fixed windows, mixed by the replay assignment."""

from __future__ import annotations

import numpy as np
import torch

from cpt.data.mixture import affine_permutation, assign, stable_seed


class TokenWindows:
    """Non-overlapping windows of seq_len + 1 tokens (inputs and shifted targets).

    With `vocab`, every window is checked to hold token ids below it (a max over a few thousand
    ids): a shard changed on disk past its stamp's checks (cpt/data/shards.py) is one line
    naming it, not an IndexError deep in the embedding."""

    def __init__(self, tokens: np.ndarray, seq_len: int, vocab: int | None = None, source: str = ""):
        self.tokens, self.seq_len, self.vocab, self.source = tokens, seq_len, vocab, source
        self.n = (len(tokens) - 1) // seq_len

    def __getitem__(self, j: int) -> np.ndarray:
        start = j * self.seq_len
        window = np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64)
        if self.vocab is not None and window.size and int(window.max()) >= self.vocab:
            from cpt.errors import UserError

            raise UserError(f"{self.source}: token id {int(window.max())} at tokens {start}-{start + self.seq_len} "
                            f"is beyond the vocabulary ({self.vocab}); the shard is corrupt: "
                            "cpt prepare --verify checks it, deleting its directory rebuilds it")
        return window


class StageSequences(torch.utils.data.Dataset):
    """Sequence i of a stage as (window, source, i): source is the index of the dataset it came
    from (-1 = the stage's own), i its id in the stage, by which its source can be recomputed.
    `start` skips the first sequences, so a resumed stage continues the same order.

    The own dataset's j-th fresh sequence is window perm(j) with a permutation seeded by
    (seed, dataset) alone, so every replay level and every stage over that dataset read it in
    the same order; replayed windows use a permutation seeded by the stage too, so successive
    stages re-read different windows.
    """

    def __init__(self, own: TokenWindows, earlier: list[TokenWindows], n_sequences: int,
                 replay: float, replay_weights: list[float], seed: int, own_index: int,
                 stage_index: int, start: int = 0):
        self.own, self.earlier, self.n = own, earlier, n_sequences
        self.replay, self.weights, self.start = replay, replay_weights, start
        self.own_seed = stable_seed(seed, own_index)
        self.replay_seeds = [stable_seed(seed, k, "replay", stage_index) for k in range(len(earlier))]

    def __len__(self) -> int:
        return self.n - self.start

    def __getitem__(self, idx: int):
        i = idx + self.start
        src, k = assign(i, self.replay, self.weights)
        if src < 0:
            w, seed = self.own, self.own_seed
        else:
            w, seed = self.earlier[src], self.replay_seeds[src]
        window = w[affine_permutation(k % w.n, w.n, seed)]
        return torch.from_numpy(window), src, i


class ValWindows(torch.utils.data.Dataset):
    """Every validation window of one dataset, in order."""

    def __init__(self, windows: TokenWindows):
        self.windows = windows

    def __len__(self) -> int:
        return self.windows.n

    def __getitem__(self, j: int):
        return torch.from_numpy(self.windows[j])
