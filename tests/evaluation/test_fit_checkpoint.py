"""``visgrpo eval --model runs/checkpoints/last.ckpt`` without ``--base-model`` (issue 25).

``visgrpo fit`` (LightningCLI) stores the parsed config as the module's hyper-parameters:
``policy`` is a plain dict, not a :class:`PolicyConfig` (layout read from a real
``visgrpo fit`` checkpoint: ``_class_path``, ``policy``: ``{"name_or_path": ..., "lora":
None | {...}}``, ``objective_overrides`` / ``sampling`` as dicts, ``_instantiator``). Eval
crashed on it with ``'dict' object has no attribute 'name_or_path'``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from visgrpo.evaluation.loading import load_for_eval
from visgrpo.models.loading import PolicyConfig, load_policy
from visgrpo.models.lora import LoraSettings
from visgrpo.objectives import ObjectiveOverrides
from visgrpo.rollout import SamplingConfig

from .test_loading import logits, perturb


def cli_checkpoint(path, cfg: PolicyConfig, policy) -> None:
    """A checkpoint with the hyper-parameters LightningCLI writes (dicts, class path)."""
    state = {f"policy.{k}": v for k, v in policy.state_dict().items()}
    if cfg.lora is not None:  # adapter-only, as PolicyModule.on_save_checkpoint writes them
        trainable = {f"policy.{n}" for n, p in policy.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in trainable}
    hparams = {"_class_path": "visgrpo.lightning.RLVRModule", "policy": dataclasses.asdict(cfg),
               "objective": "dapo", "objective_overrides": dataclasses.asdict(ObjectiveOverrides()),
               "rewards": None, "sampling": dataclasses.asdict(SamplingConfig()), "seed": 0,
               "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)


@pytest.mark.parametrize("lora", [False, True])
def test_cli_written_checkpoint_loads_without_base_model(tiny_model_dirs, tmp_path, lora):
    cfg = PolicyConfig(tiny_model_dirs["qwen2_5_vl"],
                       lora=LoraSettings(r=4, alpha=8, dropout=0.0) if lora else None)
    policy, _ = load_policy(cfg)
    perturb(policy, only_trainable=lora)
    cli_checkpoint(tmp_path / "last.ckpt", cfg, policy)
    model, _, kind = load_for_eval(tmp_path / "last.ckpt")
    assert kind == "checkpoint" and not hasattr(model, "peft_config")
    torch.testing.assert_close(logits(model), logits(policy), rtol=1e-4, atol=1e-5)


def test_policy_dict_without_a_name_is_one_line(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"policy": {"dtype": "float32"}}}, path)
    with pytest.raises(ValueError, match="names no name_or_path; pass --base-model"):
        load_for_eval(path)
