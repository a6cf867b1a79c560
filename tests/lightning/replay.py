"""Test doubles for the training system: a replay rollout engine (fixed responses per prompt
id, so runs compare exactly whatever the sampler would do) and a gradient recorder."""

from __future__ import annotations

import zlib

import lightning as L
import torch

from visgrpo.rollout import ROLLOUT_ENGINES
from visgrpo.rollout.assemble import assemble_rollout, encode_prompts
from visgrpo.rollout.vision import eos_token_ids, vision_token_ids


def is_right(sample_id, g: int) -> bool:
    """Whether the replayed response ``g`` of prompt ``sample_id`` carries the right answer."""
    return (zlib.crc32(str(sample_id).encode()) + g) % 2 == 0


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
                right = is_right(sample["id"], g)
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
