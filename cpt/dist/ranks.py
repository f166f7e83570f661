"""The ranks of one job: which one this process is, how a node's ranks start, and the few
collectives the run needs outside training (Lightning's strategies do the training's own).

Every rank runs the whole job (SPMD). Who starts the processes:
- SLURM (`srun`, e.g. through hydra/launcher=submitit_slurm with one task per device) or
  torchrun: the processes exist already; Lightning's cluster environments read their ranks.
- `python run.py trainer=ddp trainer.devices=N` on one machine: the first process starts ranks
  1..N-1 of its node by re-running this Hydra job (the job's own overrides, in its own output
  directory), as Lightning's subprocess launcher would; each child writes to rankK.out there.
The process group is set up here, before any Trainer, because the ranks must agree on more than
training: rank 0 decides whether a prefix is cached (only it takes the cache's flock, which may
wait for hours while another job trains the prefix) and tells the others. Lightning then finds
the group initialised and uses it.
"""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from cpt.errors import UserError

# Rank 0 may hold the others for as long as another job trains a prefix it waits for.
CONTROL_TIMEOUT = timedelta(days=7)
TRAIN_TIMEOUT = timedelta(minutes=30)  # Lightning's default for the training collectives


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    group: Any = None  # a gloo group for control messages (CPU objects, long timeout)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier(group=self.group)

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def first(self, fn: Callable, *args, **kwargs):
        """Rank 0 runs `fn` (it may write: data, tokenizers); then the others (they read)."""
        if self.is_zero:
            out = fn(*args, **kwargs)
            self.barrier()
            return out
        self.barrier()
        return fn(*args, **kwargs)


SINGLE = Dist()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_local_ranks(devices: int, relaunch: list[str], log_dir: Path) -> list[subprocess.Popen]:
    from lightning.fabric.strategies.launchers.subprocess_script import _launch_process_observer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), NODE_RANK="0",
                      LOCAL_RANK="0", WORLD_SIZE=str(devices))
    procs = []
    for k in range(1, devices):
        with open(log_dir / f"rank{k}.out", "w") as log:
            procs.append(subprocess.Popen(relaunch + [f"hydra.job.name=rank{k}"], env={**os.environ, "LOCAL_RANK": str(k)},
                                          stdout=log, stderr=subprocess.STDOUT))
    _launch_process_observer(procs)  # Lightning's watchdog: a rank that dies takes the job down
    return procs


@contextmanager
def ranks(trainer, relaunch: list[str] | None = None, log_dir: Path | None = None):
    """Yield this process's `Dist` for a job on `trainer.devices · trainer.num_nodes` ranks.

    `relaunch` is the command that re-runs this job (None outside a Hydra job: then only
    externally started ranks are possible).
    """
    world = trainer.devices * trainer.num_nodes
    if world == 1:
        yield SINGLE
        return
    import torch
    import torch.distributed as td
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment

    saved, procs = dict(os.environ), []
    try:
        env = next((E() for E in (SLURMEnvironment, TorchElasticEnvironment) if E.detect()), None)
        if env is None:
            if "LOCAL_RANK" not in os.environ:  # the first process of a plain `python run.py`
                if trainer.num_nodes > 1:
                    raise UserError(f"trainer.num_nodes={trainer.num_nodes}: allowed 1 unless SLURM "
                                    "(hydra/launcher=submitit_slurm) or torchrun starts the processes")
                if relaunch is None:
                    raise UserError(f"trainer.devices={trainer.devices}: several devices need `python run.py`, "
                                    "torchrun or SLURM to start one process per device")
                procs = _start_local_ranks(trainer.devices, relaunch, log_dir or Path("."))
            env = LightningEnvironment()
            env.set_world_size(world)
            env.set_global_rank(env.node_rank() * trainer.devices + env.local_rank())
        if env.world_size() != world:
            raise UserError(f"trainer.devices={trainer.devices}: with trainer.num_nodes={trainer.num_nodes} "
                            f"that is {world} ranks, but the launcher started {env.world_size()}")
        backend = "gloo"
        if trainer.accelerator == "gpu":
            backend = "nccl"
            torch.cuda.set_device(env.local_rank())
        td.init_process_group(backend, init_method=f"tcp://{env.main_address}:{env.main_port}",
                              rank=env.global_rank(), world_size=world, timeout=TRAIN_TIMEOUT)
        group = td.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
        try:
            yield Dist(env.global_rank(), world, group)
            td.barrier(group=group)
        finally:
            td.destroy_process_group()
        for p in procs:
            if p.wait():
                raise RuntimeError(f"rank {procs.index(p) + 1} exited with status {p.returncode}; see rank*.out")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        os.environ.clear()
        os.environ.update(saved)
