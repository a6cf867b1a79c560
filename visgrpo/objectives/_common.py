"""Shared helpers for the objective functions: input checks and masked statistics."""

from __future__ import annotations

import torch
from torch import Tensor


def check_mask(response_mask: Tensor, like: Tensor, name: str = "response_mask") -> Tensor:
    """Return ``response_mask`` as bool after checking it has the shape of ``like`` ([B, T]).

    Raises:
        ValueError: naming ``name`` when the mask is not 2-D or its shape differs.
    """
    if like.dim() != 2:
        raise ValueError(f"expected a [B, T] tensor, got shape {tuple(like.shape)}")
    if tuple(response_mask.shape) != tuple(like.shape):
        raise ValueError(
            f"{name} has shape {tuple(response_mask.shape)}, expected {tuple(like.shape)}"
        )
    return response_mask.bool()


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` naming both tensors when their shapes differ."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}"
        )


def broadcast_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    """Broadcast sequence advantages [B] to per-token [B, T]; [B, T] passes through.

    Raises:
        ValueError: naming ``advantages`` when the shape is neither [B] nor [B, T].
    """
    B, T = like.shape
    if advantages.dim() == 1 and advantages.shape[0] == B:
        return advantages.unsqueeze(-1).expand(B, T)  # [B, T]
    if advantages.dim() == 2 and tuple(advantages.shape) == (B, T):
        return advantages  # [B, T]
    raise ValueError(
        f"advantages has shape {tuple(advantages.shape)}, expected [{B}] or [{B}, {T}]"
    )


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (0 when the mask is empty); detached scalar."""
    x = x.detach()
    n = mask.sum()
    total = torch.where(mask, x, torch.zeros_like(x)).sum()
    return (total / n.clamp(min=1)).to(torch.float32)


def masked_min_max(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max of ``x`` over ``mask`` (both 0 when the mask is empty); detached."""
    x = x.detach().to(torch.float32)
    if not bool(mask.any()):
        zero = torch.zeros((), dtype=torch.float32, device=x.device)
        return zero, zero.clone()
    inf = torch.tensor(float("inf"), device=x.device)
    lo = torch.where(mask, x, inf).min()
    hi = torch.where(mask, x, -inf).max()
    return lo, hi


def masked_fraction(condition: Tensor, mask: Tensor) -> Tensor:
    """Fraction of masked entries where ``condition`` holds (0 for an empty mask)."""
    return ((condition & mask).sum() / mask.sum().clamp(min=1)).to(torch.float32)


