"""Test doubles for the training system: a replay rollout engine (fixed responses per prompt
id, so runs compare exactly whatever the sampler would do) and a gradient recorder.
"""

from __future__ import annotations

import copy
import zlib

import lightning as L
import torch

from visgrpo.lightning import RLVRModule
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
        return assemble_rollout(processor, prompts, enc, responses, sampling.num_generations, eos,
                                vision_token_ids(tok))


class GradientRecorder(L.Callback):
    """The (all-reduced, clipped) gradients at each optimiser step: AdamW's update is nearly
    invariant to the gradient's scale, so the gradients are what must match.
    """

    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append({n: _full(p.grad).detach().clone() for n, p in pl_module.policy.named_parameters()
                           if p.grad is not None})


def _full(t: torch.Tensor) -> torch.Tensor:
    """A sharded (FSDP2) DTensor gathered on every rank, or ``t``."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class StepProbe:
    """Records, in one process, the ``global_step`` and sample ids of every ``training_step``,
    and at the first one the optimiser state and the data module's position: what a resumed
    process starts from (installed with :func:`probe_training_steps`).
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.ids: list[list[str]] = []
        self.optimizer_state: dict | None = None
        self.data_state: dict | None = None
        self.trainable: dict[str, torch.Tensor] = {}


def probe_training_steps(monkeypatch) -> StepProbe:
    """A fresh :class:`StepProbe` wrapped around ``RLVRModule.training_step`` (replaces any
    earlier probe: the wrapped function is the module's own).
    """
    probe, step = StepProbe(), getattr(RLVRModule.training_step, "probed", RLVRModule.training_step)

    def probed(self, batch, batch_idx):
        if not probe.steps:
            probe.optimizer_state = copy.deepcopy(self.optimizers().optimizer.state_dict())
            probe.data_state = copy.deepcopy(self.trainer.datamodule.state_dict())
            probe.trainable = {f"policy.{n}": p.detach().clone()
                               for n, p in self.policy.named_parameters() if p.requires_grad}
        probe.steps.append(self.global_step)
        probe.ids.append([str(s["id"]) for s in batch.samples])
        return step(self, batch, batch_idx)

    probed.probed = step
    monkeypatch.setattr(RLVRModule, "training_step", probed)
    return probe


def assert_started_from(probe: StepProbe, ckpt: dict) -> None:
    """The probed process started from ``ckpt``: its first step is the checkpoint's, the
    optimiser state (AdamW's step, exp_avg, exp_avg_sq) and the trainable weights equal the
    checkpoint's, and the data position is the checkpoint's plus the batch just drawn.
    """
    assert probe.steps and probe.steps[0] == ckpt["global_step"] > 0, probe.steps
    (saved,) = ckpt["optimizer_states"]
    assert saved["state"] and probe.optimizer_state["state"].keys() == saved["state"].keys()
    for idx, state in saved["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(probe.optimizer_state["state"][idx][key], value, rtol=0, atol=0,
                                       msg=f"optimizer state {idx}.{key}")
    for name, value in probe.trainable.items():
        torch.testing.assert_close(value, ckpt["state_dict"][name], rtol=0, atol=0, msg=name)
    (data,) = [v for k, v in ckpt.items() if k.endswith("EvidenceDataModule")]
    order, saved_order = probe.data_state["order"], data["order"]
    assert order == {**saved_order, "consumed": saved_order["consumed"] + 1}, (order, saved_order)
