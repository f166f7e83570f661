"""Scale-out settings: checks of the `trainer.*` keys, the batch layout, the Lightning strategy, MFU.

How a run uses several devices: every rank runs the same job from start to end (SPMD), as SLURM
(`srun`, one task per GPU) and torchrun start them; a plain `python run.py trainer=ddp` starts
the other ranks of its node itself (cpt/dist/ranks.py). Lightning's DDP / FSDP strategies do the
training; cpt only decides which sequences each rank reads (cpt/plan/batching.py) and lets rank 0
alone write to MLflow and to the prefix cache.
"""

from __future__ import annotations

from cpt.plan.batching import BatchLayout, batch_layout
from cpt.errors import check as _check

ACCELERATORS = ("cpu", "gpu")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")  # Lightning's names
STRATEGIES = ("auto", "ddp", "fsdp")

# Dense bf16 peak FLOP/s per device (vendor data sheets), matched against the CUDA device name:
# what perf/mfu divides by when `trainer.peak_flops` is null.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12,
                   "L4": 121e12, "V100": 125e12}


def check_trainer(cfg) -> None:
    """Cross-field checks of `trainer.*` and of the batch split (called from RunConfig)."""
    t = cfg.trainer
    _check(t.accelerator in ACCELERATORS, "trainer.accelerator", t.accelerator, ", ".join(ACCELERATORS))
    _check(t.strategy in STRATEGIES, "trainer.strategy", t.strategy, ", ".join(STRATEGIES))
    _check(t.precision in PRECISIONS, "trainer.precision", t.precision, ", ".join(PRECISIONS))
    _check(t.devices >= 1, "trainer.devices", t.devices, ">= 1")
    _check(t.num_nodes >= 1, "trainer.num_nodes", t.num_nodes, ">= 1")
    _check(t.devices * t.num_nodes == 1 or t.strategy != "auto", "trainer.strategy", t.strategy,
           "ddp or fsdp when trainer.devices · trainer.num_nodes > 1")
    _check(t.peak_flops is None or t.peak_flops > 0, "trainer.peak_flops", t.peak_flops, "null or FLOP/s > 0")
    layout(cfg)


def check_device(trainer) -> None:
    """trainer=gpu needs a GPU here (not part of check_trainer: a dry run plans for another machine)."""
    if trainer.accelerator == "gpu":
        import torch

        _check(torch.cuda.is_available(), "trainer.accelerator", "gpu",
               "cpu on this machine: torch sees no CUDA GPU (trainer=cpu, or install a CUDA build of torch)")


def layout(cfg) -> BatchLayout:
    t = cfg.trainer
    return batch_layout(cfg.batch.tokens, cfg.model.seq_len, cfg.batch.micro_sequences, t.devices, t.num_nodes)


def peak_flops(trainer) -> float | None:
    """FLOP/s of one device: the key, else the table for a known GPU, else None (no perf/mfu)."""
    if trainer.peak_flops:
        return trainer.peak_flops
    if trainer.accelerator != "gpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def build_strategy(trainer):
    """The Lightning strategy for `trainer.strategy` (a name Lightning knows, or an instance)."""
    if trainer.strategy == "auto":
        return "auto"
    if trainer.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # No unused parameters in a causal LM: skipping the search saves a graph traversal a step.
        return DDPStrategy(find_unused_parameters=False)
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXLayer

    # One FSDP unit per transformer layer: only one layer's full parameters exist at a time.
    layer = {GPTNeoXLayer}
    if trainer.accelerator == "cpu":  # CPU processes over gloo (cpt/dist/fsdp_cpu.py): for tests, slower than ddp
        from cpt.dist.fsdp_cpu import CPUFSDPStrategy as FSDPStrategy
    else:
        from lightning.pytorch.strategies import FSDPStrategy
    return FSDPStrategy(auto_wrap_policy=layer, state_dict_type="full",
                        activation_checkpointing_policy=layer if trainer.activation_checkpointing else None)
