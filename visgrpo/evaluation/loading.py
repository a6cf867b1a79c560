"""The model to evaluate: a Hugging Face model directory, a LoRA adapter directory, or a
visgrpo (Lightning) checkpoint, always returned as a plain model with LoRA merged in.

* model directory (``config.json``): ``visgrpo.models.loading.load_policy``.
* adapter directory (``adapter_config.json``): its base model (``base_model_name_or_path``,
  or ``base_model`` to override), the adapter loaded by peft and merged.
* checkpoint file (``*.ckpt``): read with ``torch.load(weights_only=True)``; the base
  model comes from the checkpoint's ``policy`` hyper-parameter (or ``base_model``); a
  LoRA checkpoint (adapter weights only) gets the same adapters and is merged.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from visgrpo.models.loading import PolicyConfig, load_policy, load_processor
from visgrpo.models.lora import LoraSettings
from visgrpo.objectives import ObjectiveOverrides
from visgrpo.rewards import RewardSpec
from visgrpo.rollout.base import SamplingConfig


def _safe_globals():
    """Plain dataclasses a visgrpo checkpoint stores among its hyper-parameters."""
    return [PolicyConfig, LoraSettings, SamplingConfig, RewardSpec, ObjectiveOverrides]


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` (never unpickles arbitrary objects)."""
    try:
        # Registered process-wide (idempotent), like the training side does: the context
        # manager form would restore the list on exit and drop what training registered.
        torch.serialization.add_safe_globals(_safe_globals())
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a weights-only loadable visgrpo checkpoint: "
                         f"{str(err).splitlines()[0]}") from None


def policy_from_hparams(policy, path: Path) -> PolicyConfig | None:
    """The checkpoint's ``policy`` hyper-parameter as a :class:`PolicyConfig`.

    A module built in Python stores the dataclass itself; one built by ``visgrpo fit``
    (LightningCLI) stores the parsed config, plain dicts (``{"name_or_path": ..., "lora":
    {...} | None, ...}``, read from a ``visgrpo fit`` checkpoint), so both are accepted.
    """
    if policy is None or isinstance(policy, PolicyConfig):
        return policy
    if not isinstance(policy, dict):
        raise ValueError(f"{path}: hyper-parameter 'policy' is a {type(policy).__name__}, "
                         "not a policy config; pass --base-model")
    known = {f.name for f in dataclasses.fields(PolicyConfig)}
    fields = {k: v for k, v in policy.items() if k in known}
    if not fields.get("name_or_path"):
        raise ValueError(f"{path}: hyper-parameter 'policy' names no name_or_path; pass --base-model")
    lora = fields.get("lora")
    if isinstance(lora, dict):
        lora_known = {f.name for f in dataclasses.fields(LoraSettings)}
        fields["lora"] = LoraSettings(**{k: v for k, v in lora.items() if k in lora_known})
    return PolicyConfig(**fields)


def _policy_config(ckpt: dict, path: Path, base_model: str | None, dtype: str) -> PolicyConfig:
    policy = policy_from_hparams((ckpt.get("hyper_parameters") or {}).get("policy"), path)
    if policy is None and base_model is None:
        raise ValueError(f"{path}: the checkpoint names no policy; pass --base-model")
    lora = getattr(policy, "lora", None)
    name = base_model or policy.name_or_path
    return PolicyConfig(name, dtype=dtype, lora=lora,
                        trust_remote_code=bool(getattr(policy, "trust_remote_code", False)))


def load_checkpoint(path: Path, base_model: str | None, dtype: str):
    ckpt = read_checkpoint(path)
    cfg = _policy_config(ckpt, path, base_model, dtype)
    model, processor = load_policy(cfg)
    state = {k.removeprefix("policy."): v for k, v in ckpt.get("state_dict", {}).items()
             if k.startswith("policy.")}
    if not state:
        raise ValueError(f"{path}: the checkpoint holds no policy.* weights")
    missing, unexpected = model.load_state_dict(state, strict=cfg.lora is None)
    if unexpected:
        raise ValueError(f"{path}: weights the model does not have: {unexpected[:3]}")
    if cfg.lora is not None:
        model = model.merge_and_unload()
    return model, processor


def load_adapter(path: Path, base_model: str | None, dtype: str):
    from peft import PeftModel

    config = json.loads((path / "adapter_config.json").read_text())
    base = base_model or config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}: adapter_config.json names no base model; pass --base-model")
    model, processor = load_policy(PolicyConfig(base, dtype=dtype))
    model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    if (path / "preprocessor_config.json").exists() or (path / "processor_config.json").exists():
        processor = load_processor(str(path))
    return model, processor


def load_for_eval(path: str | Path, base_model: str | None = None, dtype: str = "float32"):
    """``(model, processor, kind)`` with ``kind`` in ``hf``, ``adapter``, ``checkpoint``."""
    p = Path(path)
    if p.is_file():
        return (*load_checkpoint(p, base_model, dtype), "checkpoint")
    if (p / "adapter_config.json").exists():
        return (*load_adapter(p, base_model, dtype), "adapter")
    if (p / "config.json").exists():
        return (*load_policy(PolicyConfig(str(p), dtype=dtype)), "hf")
    raise FileNotFoundError(f"{p}: neither a model directory (config.json), a LoRA adapter "
                            "(adapter_config.json) nor a checkpoint file")
