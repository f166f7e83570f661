"""The whole state of a stage under any strategy: full weights and optimizer state to save, and
the optimizer state (and, for the EMA, weights) of a checkpoint loaded back into what trains now.

Under DDP (and on one device) every rank holds everything: `state_dict()` is the state. Under
FSDP each rank holds a shard of every parameter and of its AdamW moments; the full state is
gathered onto rank 0 with FSDP's full-state-dict collectives, so every rank must call
`full_weights` and `full_optimizer` at the same step. A checkpoint's optimizer state has one format whatever wrote it — the plain
`torch.optim` one, keyed by the parameter's position in the optimizer's groups — so a stage
checkpointed under one strategy resumes under another.

Offloading the gathered tensors to CPU memory is what a GPU needs (rank 0 holds the full model
there, not on the device); on CPU processes it would copy nothing, and it crashes (SIGSEGV) in
torch 2.13's FSDP in practice, so it is off there.

Cost at scale: rank 0 holds the whole state in CPU memory while saving, and on resume every
rank reads the whole checkpoint before keeping its shard (neox-10b: ~120 GB of weights and
moments per process). A sharded format (torch.distributed.checkpoint) would avoid both.
"""

from __future__ import annotations

from contextlib import contextmanager


def sharded(trainer) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(trainer.strategy, FSDPStrategy)  # (cpt/dist/fsdp_cpu.py's CPU strategy too)


@contextmanager
def _full(trainer, rank0_only: bool):
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    offload = trainer.strategy.root_device.type != "cpu"
    with FSDP.state_dict_type(trainer.strategy.model, StateDictType.FULL_STATE_DICT,
                              FullStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
                              FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only)):
        yield


def full_weights(trainer, module) -> dict:
    """The plain model's state_dict (rank 0; under FSDP the other ranks get {}); a collective under FSDP."""
    if not sharded(trainer):
        return module.model.state_dict()
    with _full(trainer, rank0_only=True):
        state = trainer.strategy.model.state_dict()  # the root FSDP module: the LightningModule's keys
    return {k.removeprefix("model."): v for k, v in state.items()}


def load_full_weights(trainer, state: dict) -> None:
    """Load the plain model's full state_dict into the FSDP model: every rank passes all of it and
    keeps its own shard (a collective)."""
    with _full(trainer, rank0_only=False):
        trainer.strategy.model.load_state_dict({f"model.{k}": v for k, v in state.items()})


def drop_gathered(trainer) -> None:
    """Free every FSDP unit's gathered parameters, so that their next use gathers the shards anew.

    FSDP keeps the root unit's gathered parameters after a forward without a backward (an
    evaluation) and its next forward or state_dict uses them without gathering: right only while
    the shards are unchanged, and the EMA writes them in place (cpt/train/ema.py). FSDP has no
    public call for this; `reshard(True)` is what its own post-backward runs on each unit."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    for unit in FSDP.fsdp_modules(trainer.strategy.model):
        if unit._handle is not None:
            unit._handle.reshard(True)


def full_optimizer(trainer, optimizer) -> dict:
    """`optimizer.state_dict()` of the unsharded model (rank 0; under FSDP the other ranks get {});
    a collective under FSDP."""
    if not sharded(trainer):
        return optimizer.state_dict()
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, OptimStateKeyType

    root = trainer.strategy.model
    with _full(trainer, rank0_only=True):
        by_name = FSDP.optim_state_dict(root, optimizer)  # keyed by parameter name; {} off rank 0
    if not by_name:
        return {}
    return FSDP.rekey_optim_state_dict(by_name, OptimStateKeyType.PARAM_ID, root, optim=optimizer)


def load_optimizer(trainer, optimizer, state: dict) -> None:
    """Load a checkpoint's (plain, full) optimizer state; under FSDP every rank passes the full
    state and keeps its own shard of it (a collective)."""
    if not sharded(trainer):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, OptimStateKeyType

    root = trainer.strategy.model
    by_name = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_NAME, root, optim=optimizer)
    with _full(trainer, rank0_only=False):
        optimizer.load_state_dict(FSDP.optim_state_dict_to_load(root, optimizer, by_name))
