"""The global batch split over devices and micro-batches, and which sequences each rank reads (pure)."""

from __future__ import annotations

import pytest

from cpt.plan.batching import RankSampler, batch_layout, rank_indices
from cpt.errors import UserError

from conftest import parse


@pytest.mark.parametrize("tokens,seq,micro,devices,nodes,expected", [
    # (sequences per step, world, micro-batch, accumulation)
    (2048, 128, 16, 1, 1, (16, 1, 16, 1)),  # the default run: one forward pass per step
    (2048, 128, 4, 1, 1, (16, 1, 4, 4)),
    (2048, 128, 16, 2, 1, (16, 2, 8, 1)),  # micro capped at the 8 sequences a device reads
    (2048, 128, 2, 4, 1, (16, 4, 2, 2)),
    (1104 * 2048, 2048, 6, 8, 1, (1104, 8, 6, 23)),  # the papers' 2.26M tokens on 8 GPUs
    (1104 * 2048, 2048, 3, 8, 2, (1104, 16, 3, 23)),  # ... on 2 nodes of 8
])
def test_layout_table(tokens, seq, micro, devices, nodes, expected):
    lay = batch_layout(tokens, seq, micro, devices, nodes)
    assert (lay.sequences, lay.world, lay.micro, lay.accumulation) == expected
    assert lay.per_rank * lay.world == lay.sequences


@pytest.mark.parametrize("args,message", [
    ((2048, 128, 16, 3, 1), "batch.tokens=2048: allowed a positive multiple of model.seq_len · trainer.devices · "
                            "trainer.num_nodes = 128·3·1 = 384"),
    ((2000, 128, 16, 1, 1), "batch.tokens=2000: allowed a positive multiple"),
    ((1104 * 2048, 2048, 16, 8, 1), "batch.micro_sequences=16: allowed a divisor of the 138 sequences each of "
                                    "the 8 device(s) reads per step"),
])
def test_layout_errors_are_one_line(args, message):
    with pytest.raises(UserError) as e:
        batch_layout(*args)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_ranks_read_disjoint_blocks_that_make_up_each_step_in_order():
    lay = batch_layout(12 * 8, 8, 2, 3, 1)  # 12 sequences a step, 3 ranks of 4 (2 x 2)
    steps = 5
    per_rank = [list(RankSampler(steps, lay, r)) for r in range(3)]
    assert all(len(p) == len(RankSampler(steps, lay, r)) == steps * 4 for r, p in enumerate(per_rank))
    for t in range(steps):
        step = [i for r in range(3) for i in per_rank[r][t * 4:(t + 1) * 4]]
        assert step == list(range(t * 12, (t + 1) * 12))  # the one-device order, split in 3 blocks
    assert rank_indices(2, 1, lay) == range(28, 32)
    assert list(RankSampler(steps, lay, 2, first_step=4)) == [56, 57, 58, 59]


@pytest.mark.parametrize("overrides,message", [
    (["trainer=ddp", "trainer.devices=3"], "batch.tokens=2048: allowed a positive multiple"),
    (["trainer=ddp", "trainer.devices=2", "trainer.strategy=auto"], "trainer.strategy=auto: allowed ddp or fsdp"),
    (["trainer.accelerator=tpu"], "trainer.accelerator=tpu: allowed cpu, gpu"),
    (["trainer.peak_flops=0"], "trainer.peak_flops=0.0: allowed null or FLOP/s > 0"),
])
def test_trainer_keys_are_checked_at_compose_time(overrides, message):
    with pytest.raises(UserError) as e:
        parse(overrides)
    assert str(e.value).startswith(message)


def test_fsdp_on_cpu_processes_gets_the_cpu_strategy():
    """Lightning refuses FSDP without a GPU; cpt's subclass runs it over gloo (cpt/dist/fsdp_cpu.py,
    trained and resumed for real in tests/test_distributed_resume.py)."""
    from cpt.dist.strategy import build_strategy

    t = parse(["trainer=fsdp", "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.devices=2"]).trainer
    assert type(build_strategy(t)).__name__ == "CPUFSDPStrategy"
    assert type(build_strategy(parse(["trainer=fsdp"]).trainer)).__name__ == "FSDPStrategy"


def test_every_trainer_option_composes():
    for name, (devices, strategy, precision) in {"cpu": (1, "auto", "32-true"), "gpu": (1, "auto", "bf16-mixed"),
                                                  "ddp": (2, "ddp", "bf16-mixed"), "fsdp": (8, "fsdp", "bf16-mixed")}.items():
        t = parse([f"trainer={name}"]).trainer
        assert (t.name, t.devices, t.strategy, t.precision) == (name, devices, strategy, precision)
        assert t.compile is False
