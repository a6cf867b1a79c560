"""The reference policy for the KL term (docs/methods.md, Base objectives, "KL to the reference").

With LoRA the reference is the same model with its adapters disabled (no second copy of
the weights); without LoRA it is a frozen deep copy taken at construction time.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a core dependency
        return False
    return isinstance(model, PeftModel)


class ReferencePolicy:
    """Gives no-grad access to the reference model.

    Args:
        policy: the trainable policy (a ``PeftModel`` or a plain transformers model).
        mode: ``"auto"`` (adapters disabled for a PeftModel, else a frozen copy),
            ``"adapters_disabled"`` or ``"frozen_copy"``.
    """

    def __init__(self, policy: nn.Module, mode: str = "auto") -> None:
        if mode == "auto":
            mode = "adapters_disabled" if is_peft_model(policy) else "frozen_copy"
        if mode == "adapters_disabled" and not is_peft_model(policy):
            raise ValueError("reference mode 'adapters_disabled' needs a LoRA (peft) policy")
        if mode not in ("adapters_disabled", "frozen_copy"):
            raise ValueError(f"unknown reference mode {mode!r}; valid: auto, adapters_disabled, frozen_copy")
        self.mode = mode
        self._policy = policy
        self._copy: nn.Module | None = None
        if mode == "frozen_copy":
            self._copy = copy.deepcopy(policy).eval()
            self._copy.requires_grad_(False)

    @contextlib.contextmanager
    def model(self) -> Iterator[nn.Module]:
        """Context yielding the reference model, under ``torch.no_grad``."""
        with torch.no_grad():
            if self._copy is not None:
                device = next(self._policy.parameters()).device
                if next(self._copy.parameters()).device != device:
                    self._copy.to(device)  # the copy is not a submodule: follow the policy
                yield self._copy
            else:
                with self._policy.disable_adapter():
                    yield self._policy

    @property
    def frozen_copy(self) -> nn.Module | None:
        """The frozen copy (``None`` when the reference shares the policy's weights)."""
        return self._copy
