"""Policy loading: one code path for hub ids, local directories and the tiny test models.

``load_policy(PolicyConfig(...))`` returns ``(model, processor)``. It handles dtype, the
attention implementation (GPU-only ``flash_attention_2`` is refused cleanly without CUDA),
``trust_remote_code`` (off unless asked), LoRA through peft, QLoRA (4-bit nf4 base
weights through bitsandbytes, which runs on CPU from bitsandbytes 0.49 on) and gradient
checkpointing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch

from visgrpo.models.lora import LoraSettings, apply_lora

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PolicyConfig:
    """How to load the policy.

    Args:
        name_or_path: hub id (``Qwen/Qwen2.5-VL-7B-Instruct``) or a local model directory.
        dtype: parameter dtype; ``bfloat16``/``float16`` are meant for GPUs.
        attn_implementation: ``sdpa`` (default; the attention probe wraps it), ``eager`` or
            ``flash_attention_2`` (CUDA only).
        trust_remote_code: allow the checkpoint's own Python code; off by default.
        lora: LoRA settings; ``None`` trains all weights.
        quantization: ``None`` or ``"nf4"`` / ``"fp4"``: 4-bit base weights (QLoRA; needs ``lora``).
        gradient_checkpointing: recompute activations in the backward pass.
        revision: hub revision (ignored for local directories).
        double_quant: QLoRA double quantisation of the absmax constants.
        extra_kwargs: passed on to ``from_pretrained``.
    """

    name_or_path: str
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    trust_remote_code: bool = False
    lora: LoraSettings | None = None
    quantization: Literal["nf4", "fp4"] | None = None
    gradient_checkpointing: bool = False
    revision: str | None = None
    double_quant: bool = True
    extra_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quantization is not None and self.lora is None:
            raise ValueError("quantization (QLoRA) needs lora settings: 4-bit base weights cannot be trained")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


def _check_hardware(cfg: PolicyConfig) -> None:
    if cfg.attn_implementation == "flash_attention_2" and not torch.cuda.is_available():
        raise RuntimeError(
            "attn_implementation='flash_attention_2' needs a CUDA GPU; use 'sdpa' on this machine"
        )
    if cfg.dtype != "float32" and not torch.cuda.is_available():
        warnings.warn(f"dtype={cfg.dtype} on CPU is slow and less exact; float32 is the CPU default", stacklevel=3)


def load_processor(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    """The model's own ``AutoProcessor`` (tokenizer, image processor, chat template)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)


def load_policy(cfg: PolicyConfig):
    """Load the policy model and its processor.

    Returns:
        ``(model, processor)``; with ``cfg.lora`` the model is a ``peft.PeftModel`` whose
        adapters are the only trainable parameters.
    """
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    _check_hardware(cfg)
    kwargs = dict(
        dtype=DTYPES[cfg.dtype],
        attn_implementation=cfg.attn_implementation,
        trust_remote_code=cfg.trust_remote_code,
        revision=cfg.revision,
        **cfg.extra_kwargs,
    )
    if cfg.quantization is not None:
        compute = DTYPES[cfg.dtype]
        # Double quantisation packs absmax values in blocks of 256; tiny test models have
        # too few blocks for it, so it is on only where it pays (real checkpoints).
        double_quant = cfg.double_quant
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.quantization,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=double_quant,
            # The vision tower and lm_head stay in full precision, as in QLoRA practice.
            llm_int8_skip_modules=["model.visual", "visual", "lm_head"],
        )
        kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else "cpu"
    model = AutoModelForImageTextToText.from_pretrained(cfg.name_or_path, **kwargs)
    processor = load_processor(cfg.name_or_path, cfg.trust_remote_code, cfg.revision)

    if cfg.quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing
        )
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    return model, processor


def count_parameters(model) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (4-bit packed weights count as stored)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
