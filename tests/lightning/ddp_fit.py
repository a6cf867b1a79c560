"""Train two RL steps on CPU with N processes (Lightning ``ddp``, gloo) and save the weights.

Run by tests/lightning/test_ddp.py: ``python ddp_fit.py WORKDIR DEVICES BATCH OUT``. Rollouts
come from a replay engine (fixed responses per prompt id), so 1 process x 4 prompts and
2 processes x 2 prompts see exactly the same data and must produce the same weights.
"""

from __future__ import annotations

import os
import sys
import zlib

import lightning as L
import torch

from visgrpo.credit.ease import EASECredit
from visgrpo.lightning import EvidenceDataModule, RLVRModule
from visgrpo.models.loading import PolicyConfig
from visgrpo.rollout import ROLLOUT_ENGINES, SamplingConfig
from visgrpo.rollout.assemble import assemble_rollout, encode_prompts
from visgrpo.rollout.vision import eos_token_ids, vision_token_ids


@ROLLOUT_ENGINES.register("replay")
class ReplayEngine:
    """Response g of a prompt: the right answer for even ``crc32(id) + g``, else a wrong one."""

    def generate(self, model, processor, prompts, sampling, seed=None):
        tok = processor.tokenizer
        enc = encode_prompts(processor, prompts)
        eos = eos_token_ids(tok)
        responses = []
        for sample in prompts.samples:
            for g in range(sampling.num_generations):
                right = (zlib.crc32(str(sample["id"]).encode()) + g) % 2 == 0
                text = f"<think></think><answer>{sample['answer'] if right else 'zero'}</answer>"
                responses.append(tok(text, add_special_tokens=False)["input_ids"] + [eos[0]])
        return assemble_rollout(processor, prompts, enc, responses, sampling.num_generations, eos, vision_token_ids(tok))


class GradientRecorder(L.Callback):
    """The (all-reduced, clipped) gradients at each optimiser step: AdamW's update is nearly
    invariant to the gradient's scale, so the gradients are what must match."""

    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append({n: p.grad.detach().clone() for n, p in pl_module.policy.named_parameters()
                           if p.grad is not None})


def main(workdir: str, devices: int, batch_size: int, out: str) -> None:
    os.chdir(workdir)
    torch.use_deterministic_algorithms(True)
    module = RLVRModule(
        policy=PolicyConfig("artifacts/tiny_qwen2_5_vl"),
        objective="dapo",
        credit=[EASECredit(lambda_attn=0.1, reward_threshold=0.5)],
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
