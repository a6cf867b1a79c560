"""Train two RL steps on CPU with N processes (Lightning ``ddp``, gloo) and save the weights.

Run by tests/lightning/test_ddp.py: ``python ddp_fit.py WORKDIR DEVICES BATCH OUT [STRATEGY]``
(STRATEGY ``ddp``, the default, or ``fsdp2``: Lightning's ``ModelParallelStrategy`` with the
policy sharded by torch's ``fully_shard`` over a 2-rank data-parallel mesh; Lightning's
``FSDPStrategy`` refuses CPU accelerators). Rollouts
come from a replay engine (fixed responses per prompt id), so 1 process x 4 prompts and
2 processes x 2 prompts see exactly the same data and must produce the same weights (EASE's
normaliser and VGPO's focus min-max are taken over the global batch).
"""

from __future__ import annotations

import os
import sys

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from replay import GradientRecorder  # registers the "replay" engine (run as a script)
from torch.distributed.fsdp import fully_shard

from visgrpo.credit.ease import EASECredit
from visgrpo.credit.vgpo import VGPOCredit
from visgrpo.lightning import EvidenceDataModule, RLVRModule
from visgrpo.models.loading import PolicyConfig
from visgrpo.rollout import SamplingConfig


class ShardedRLVRModule(RLVRModule):
    """The RL module with its policy sharded by FSDP2 (``fully_shard``) over the data-parallel
    mesh.
    """

    def configure_model(self) -> None:
        mesh = self.device_mesh["data_parallel"]
        # visgrpo's forward calls the vision tower (images once per prompt), the embedding,
        # the decoder layers and the head (response rows only) from outside a common root's
        # forward, so each is an FSDP root of its own (the vision tower holds its blocks).
        lm = self.policy.model.language_model
        units = [self.policy.model.visual, self.policy.lm_head]
        for child in lm.children():
            units += list(child) if isinstance(child, torch.nn.ModuleList) else [child]
        for module in self.policy.model.visual.modules():
            if type(module).__name__.endswith("VisionBlock"):
                fully_shard(module, mesh=mesh)
        for module in units:
            if any(True for _ in module.parameters()):
                fully_shard(module, mesh=mesh)
        assert all(hasattr(p, "full_tensor") for p in self.policy.parameters())  # all sharded


def full(t: torch.Tensor) -> torch.Tensor:
    """A sharded DTensor gathered (a collective: every rank calls it), or ``t``."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def main(workdir: str, devices: int, batch_size: int, out: str, strategy: str = "ddp") -> None:
    os.chdir(workdir)
    torch.use_deterministic_algorithms(True)
    cls = ShardedRLVRModule if strategy == "fsdp2" else RLVRModule
    module = cls(
        policy=PolicyConfig("artifacts/tiny_qwen2_5_vl"),
        objective="dapo",
        # VGPO's focus min-max spans the global batch: reduced over micro-batches and ranks.
        credit=[EASECredit(lambda_attn=0.1, reward_threshold=0.5), VGPOCredit()],
        sampling=SamplingConfig(num_generations=4, max_new_tokens=16),
        rollout_engine="replay",
        learning_rate=1e-3,
        micro_batch_size=8,
        seed=0,
    )
    data = EvidenceDataModule(
        train_path="artifacts/shapes/train", model_path="artifacts/tiny_qwen2_5_vl", batch_size=batch_size, seed=0
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, max_steps=2,
        strategy=(ModelParallelStrategy(data_parallel_size=devices, tensor_parallel_size=1)
                  if strategy == "fsdp2" else "ddp" if devices > 1 else "auto"),
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[recorder := GradientRecorder()],
    )
    trainer.fit(module, datamodule=data)
    state = {k: full(v).detach().cpu() for k, v in module.policy.state_dict().items()}
    if trainer.is_global_zero:
        torch.save({"state": state, "grads": recorder.grads}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], *sys.argv[5:])
