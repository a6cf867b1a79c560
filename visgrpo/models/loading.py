"""Policy loading: one code path for hub ids, local directories and the tiny test models.

``load_policy(PolicyConfig(...))`` returns ``(model, processor)``. It handles dtype, the
attention implementation (GPU-only ``flash_attention_2`` is refused cleanly without CUDA),
``trust_remote_code`` (off unless asked), LoRA through peft, QLoRA (4-bit nf4 base
weights through bitsandbytes, which runs on CPU from bitsandbytes 0.49 on) and gradient
checkpointing.

``name_or_path`` is a local directory, a hub id, or ``tiny:<family>`` (``tiny:qwen2_5_vl``):
the tiny random-weight model of :mod:`visgrpo.models.tiny`, built on first use into
``artifacts/tiny_<family>`` under the working directory and reused after. A name that is
neither a local directory nor a model the hub (or its local cache) has fails with one line
naming it (:class:`ModelNotFound`) before transformers tries to download anything.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from visgrpo.models.families import FAMILIES
from visgrpo.models.lora import LoraSettings, apply_lora
from visgrpo.models.tiny import build_tiny

TINY_PREFIX = "tiny:"
TINY_CACHE = Path("artifacts")  # relative to the working directory, like the configs' data paths


class ModelNotFound(FileNotFoundError):
    """``name_or_path`` is neither a local model directory nor a model the hub can serve."""


def tiny_model(family: str, cache: Path = TINY_CACHE) -> Path:
    """The tiny random-weight model of ``family`` (``tiny:<family>``), built once into
    ``cache/tiny_<family>`` (atomically: concurrent first uses build it once each and keep one).
    """
    if family not in FAMILIES:
        raise ModelNotFound(f"{TINY_PREFIX}{family}: unknown family; valid: {', '.join(sorted(FAMILIES))}")
    out = cache / f"tiny_{family}"
    if (out / "config.json").exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".tmp-tiny_{family}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_tiny(family, tmp)
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first (or a stale non-model folder is in the way)
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():
            raise ModelNotFound(f"{out}: exists but is not a model directory; remove it") from None
    return out


def _check_hub(name: str, revision: str | None) -> None:
    """Raise :class:`ModelNotFound` unless the hub (or its local cache) has model ``name``."""
    from huggingface_hub import model_info, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
            return
    except HFValidationError:
        raise ModelNotFound(f"{name}: neither a local directory nor a valid hub model id") from None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelNotFound(f"{name}: not a local directory and not in the hub cache (HF_HUB_OFFLINE is set)")
    try:
        model_info(name, revision=revision, timeout=10)
    except RepositoryNotFoundError:
        raise ModelNotFound(f"{name}: neither a local directory nor a model on the Hugging Face hub") from None
    except HfHubHTTPError:
        return  # gated / private / rate-limited: from_pretrained gives the precise message
    except Exception as err:  # DNS, connection refused, timeout, proxy
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelNotFound(f"{name}: not a local directory and the Hugging Face hub is not reachable "
                            f"({reason})") from None


def resolve_model(name_or_path: str, revision: str | None = None) -> str:
    """``name_or_path`` as ``from_pretrained`` takes it: a local directory (``tiny:<family>``
    built on first use) or a hub id the hub has.

    Raises:
        ModelNotFound: neither a local directory nor a hub model (one line naming it).
    """
    if name_or_path.startswith(TINY_PREFIX):
        return str(tiny_model(name_or_path[len(TINY_PREFIX):]))
    if Path(name_or_path).is_dir():
        return name_or_path
    if Path(name_or_path).exists():
        raise ModelNotFound(f"{name_or_path}: a file, not a model directory")
    _check_hub(name_or_path, revision)
    return name_or_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PolicyConfig:
    """How to load the policy.

    Args:
        name_or_path: hub id (``Qwen/Qwen2.5-VL-7B-Instruct``), a local model directory or
            ``tiny:<family>`` (the tiny random-weight model, built on first use).
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

    path = resolve_model(name_or_path, revision)
    return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)


def load_policy(cfg: PolicyConfig):
    """Load the policy model and its processor.

    Returns:
        ``(model, processor)``; with ``cfg.lora`` the model is a ``peft.PeftModel`` whose
        adapters are the only trainable parameters.
    """
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    _check_hardware(cfg)
    path = resolve_model(cfg.name_or_path, cfg.revision)
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
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    processor = load_processor(path, cfg.trust_remote_code, cfg.revision)

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
