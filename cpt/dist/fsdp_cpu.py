"""Lightning's FSDP on CPU processes (gloo backend): `trainer=fsdp trainer.accelerator=cpu`.

What it is for: running the sharded code paths (training, full-state checkpoints, resume) on
a machine without GPUs, as the tests do; it is slower than DDP there. Lightning 2.6 refuses
FSDP without a GPU, and it wraps the model with `device_id=root_device.index`, which is None
on CPU, so torch's FSDP then looks for an accelerator and stops. torch's FSDP itself runs on
CPU with gloo when given `device_id=cpu`: this strategy wraps the model that way, and
Lightning's own set-up then finds it wrapped and only adds activation checkpointing.
(Lightning's refusal tests the exact class FSDPStrategy, so a subclass passes it.)
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import FSDPStrategy


class CPUFSDPStrategy(FSDPStrategy):
    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel

        kwargs = dict(self.kwargs)
        self.kwargs.pop("auto_wrap_policy", None)  # applied here; Lightning would warn that it is ignored
        model = FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                         mixed_precision=self.mixed_precision_config,
                                         sharding_strategy=self.sharding_strategy,
                                         device_id=torch.device("cpu"), **kwargs)
        return super()._setup_model(model)
