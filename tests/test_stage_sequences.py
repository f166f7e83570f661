"""What a stage reads, on the real tiny shards: the same fresh order at every replay level,
replay from training splits only, and a resumed stage that continues the same order."""

from __future__ import annotations

import numpy as np
import pytest

from cpt.data.prepare import prepare
from cpt.data.windows import TokenWindows
from cpt.plan.stages import build_plan
from cpt.train.trainer import stage_sequences

from conftest import TINY, TINY_STEPS, _tiny_budgets, parse

SHIFT = ["shift=synthetic-3split", *_tiny_budgets("synthetic-3split")]
N = TINY_STEPS * 4  # sequences of a tiny stage: 24 steps of 4


def stage_reads(prepared_root, replay, stage_index=2, start=0):
    cfg = parse(TINY + SHIFT + [f"replay={replay}"], prepared_root)
    data = prepare(cfg)  # built by the session fixture: opened, not rebuilt
    stage = build_plan(cfg)[stage_index]
    seqs = stage_sequences(cfg, stage, data, start=start)
    return cfg, data, [seqs[j] for j in range(len(seqs))]


def test_fresh_sequences_come_in_the_same_order_at_every_replay_level(prepared_root):
    _, _, base = stage_reads(prepared_root, 0.0)
    assert [src for _, src, _ in base] == [-1] * N
    for replay in (0.005, 0.05, 0.25, 0.5):
        _, _, got = stage_reads(prepared_root, replay)
        fresh = [w for w, src, _ in got if src == -1]
        assert len(fresh) == N - int(N * replay)
        # a run with replay r reads a prefix of what the run without replay reads
        assert all(np.array_equal(a, b) for a, (b, _, _) in zip(fresh, base))


def _rows(tokens: np.ndarray, seq_len: int) -> set[bytes]:
    n = (len(tokens) - 1) // seq_len
    return {np.asarray(tokens[j * seq_len:(j + 1) * seq_len], dtype=np.int64).tobytes() for j in range(n)}


def test_replay_reads_the_earlier_datasets_training_splits_only(prepared_root):
    cfg, data, got = stage_reads(prepared_root, 0.5)
    names = [d.name for d in cfg.shift.datasets]
    L = cfg.model.seq_len
    replayed = [(w, src) for w, src, _ in got if src >= 0]
    assert {src for _, src in replayed} == {0, 1} and len(replayed) == N // 2
    for w, src in replayed:
        head = w[:L].numpy().tobytes()
        assert head in _rows(data.shards[names[src]].array("train"), L)
        val = np.asarray(data.shards[names[src]].array("val"), dtype=np.int64)
        assert not any(np.array_equal(val[o:o + L], w[:L].numpy()) for o in range(len(val) - L))


@pytest.mark.parametrize("start", [1, 37, N - 1])
def test_a_resumed_stage_continues_the_same_order(prepared_root, start):
    _, _, full = stage_reads(prepared_root, 0.25)
    _, _, resumed = stage_reads(prepared_root, 0.25, start=start)
    assert len(resumed) == N - start
    assert [i for _, _, i in full] == list(range(N))
    for (w, src, i), (fw, fsrc, fi) in zip(resumed, full[start:]):
        assert (src, i) == (fsrc, fi) and np.array_equal(w, fw)


def test_windows_are_consecutive_training_tokens(prepared_root):
    cfg, data, got = stage_reads(prepared_root, 0.0, stage_index=0)
    own = TokenWindows(data.shards[cfg.shift.datasets[0].name].array("train"), cfg.model.seq_len)
    assert own.n == N  # one tiny stage reads its dataset's training split once
    assert sorted(_rows(own.tokens, cfg.model.seq_len)) == sorted(w[:-1].numpy().tobytes() for w, _, _ in got)
