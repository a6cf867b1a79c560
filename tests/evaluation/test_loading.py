"""The three model sources of ``visgrpo eval`` load the weights that were saved."""

from __future__ import annotations

import pytest
import torch

from visgrpo.evaluation.loading import load_for_eval
from visgrpo.models.loading import PolicyConfig, load_policy
from visgrpo.models.lora import LoraSettings
from visgrpo.objectives import ObjectiveOverrides
from visgrpo.rewards import RewardSpec
from visgrpo.rollout import SamplingConfig

IDS = torch.tensor([[5, 6, 7, 8, 9]])


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def perturb(model, only_trainable: bool):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad or not only_trainable:
                p.add_(0.05 * torch.randn_like(p))


def test_hf_directory(tiny_model_dirs):
    model, _, kind = load_for_eval(tiny_model_dirs["qwen2_vl"])
    ref, _ = load_policy(PolicyConfig(tiny_model_dirs["qwen2_vl"]))
    assert kind == "hf"
    torch.testing.assert_close(logits(model), logits(ref))


@pytest.mark.slow
def test_lora_adapter_directory_is_merged(tiny_model_dirs, tmp_path):
    base = tiny_model_dirs["qwen2_5_vl"]
    peft_model, _ = load_policy(PolicyConfig(base, lora=LoraSettings(r=4, alpha=8, dropout=0.0)))
    perturb(peft_model, only_trainable=True)
    peft_model.save_pretrained(tmp_path / "adapter")
    model, processor, kind = load_for_eval(tmp_path / "adapter")
    assert kind == "adapter" and not hasattr(model, "peft_config")
    torch.testing.assert_close(logits(model), logits(peft_model), rtol=1e-4, atol=1e-5)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"


@pytest.mark.parametrize("lora", [False, True])
def test_visgrpo_checkpoint_weights_only(tiny_model_dirs, tmp_path, lora):
    cfg = PolicyConfig(tiny_model_dirs["qwen2_5_vl"],
                       lora=LoraSettings(r=4, alpha=8, dropout=0.0) if lora else None)
    policy, _ = load_policy(cfg)
    perturb(policy, only_trainable=lora)
    state = {f"policy.{k}": v for k, v in policy.state_dict().items()}
    if lora:  # adapter-only checkpoints, as PolicyModule.on_save_checkpoint writes them
        trainable = {f"policy.{n}" for n, p in policy.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in trainable}
    path = tmp_path / "last.ckpt"
    # An RLVR checkpoint's hyper-parameters hold these dataclasses (allow-listed, weights-only).
    hparams = {"policy": cfg, "seed": 0, "objective_overrides": ObjectiveOverrides(kl_coef=0.01),
               "sampling": SamplingConfig(), "rewards": [RewardSpec("accuracy", 1.0)]}
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    model, _, kind = load_for_eval(path)
    assert kind == "checkpoint"
    torch.testing.assert_close(logits(model), logits(policy), rtol=1e-4, atol=1e-5)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil()}}, path)
    with pytest.raises(ValueError, match="not a weights-only loadable visgrpo checkpoint"):
        load_for_eval(path)
