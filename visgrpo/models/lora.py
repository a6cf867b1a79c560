"""LoRA through peft, with the vision tower included or excluded.

Target modules are matched by a regular expression over module names so that the text
decoder's ``q_proj``/``gate_proj``/... are adapted while the vision tower's layers of the
same names (Qwen2.5-VL's vision MLP also has ``gate_proj``) are left alone unless
``include_vision`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TEXT_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_LINEAR = ("qkv", "proj", "fc1", "fc2", "linear_fc1", "linear_fc2", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA hyper-parameters.

    Args:
        r: adapter rank.
        alpha: scaling numerator (effective scale ``alpha / r``).
        dropout: dropout on the adapter input.
        target_modules: ``"all-linear"`` (every linear layer of the text decoder) or a list of
            module-name suffixes such as ``["q_proj", "v_proj"]``.
        include_vision: also adapt the vision tower's (and merger's) linear layers.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    include_vision: bool = False
    modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"lora.r must be positive, got {self.r}")


def unwrap_peft(model):
    """The transformers model under a peft wrapper (``model`` itself when unwrapped)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def target_regex(settings: LoraSettings) -> str:
    """The peft ``target_modules`` regular expression (full-match over module names)."""
    text = TEXT_LINEAR if settings.target_modules == "all-linear" else tuple(settings.target_modules)
    parts = [rf".*language_model\.layers\.\d+\..*\.({'|'.join(map(re.escape, text))})"]
    if settings.include_vision:
        vision = VISION_LINEAR if settings.target_modules == "all-linear" else text
        parts.append(rf".*visual\..*\.({'|'.join(map(re.escape, vision))})")
    return "|".join(f"(?:{p})" for p in parts)


def apply_lora(model, settings: LoraSettings):
    """Wrap ``model`` in a ``peft.PeftModel`` whose LoRA adapters are the only trainable weights."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_regex(settings),
        modules_to_save=settings.modules_to_save or None,
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    n = sum(1 for name, _ in peft_model.named_parameters() if "lora_" in name)
    if n == 0:
        raise ValueError(f"LoRA matched no module with target_modules={settings.target_modules!r}")
    return peft_model
