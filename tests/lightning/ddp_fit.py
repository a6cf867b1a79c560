"""Train two RL steps on CPU with N processes (Lightning ``ddp``, gloo) and save the weights.

Run by tests/lightning/test_ddp.py: ``python ddp_fit.py WORKDIR DEVICES BATCH OUT``. Rollouts
come from a replay engine (fixed responses per prompt id), so 1 process x 4 prompts and
2 processes x 2 prompts see exactly the same data and must produce the same weights (EASE's
normaliser and VGPO's focus min-max are taken over the global batch).
"""

from __future__ import annotations

import os
import sys

import lightning as L
import torch
from replay import GradientRecorder  # registers the "replay" engine (run as a script)

from visgrpo.credit.ease import EASECredit
from visgrpo.credit.vgpo import VGPOCredit
from visgrpo.lightning import EvidenceDataModule, RLVRModule
from visgrpo.models.loading import PolicyConfig
from visgrpo.rollout import SamplingConfig


def main(workdir: str, devices: int, batch_size: int, out: str) -> None:
    os.chdir(workdir)
    torch.use_deterministic_algorithms(True)
    module = RLVRModule(
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
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=2,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[recorder := GradientRecorder()],
    )
    trainer.fit(module, datamodule=data)
    if trainer.is_global_zero:
        state = {k: v.detach().cpu() for k, v in module.policy.state_dict().items()}
        torch.save({"state": state, "grads": recorder.grads}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
