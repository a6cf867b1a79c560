"""Prompt groups of a batch: the one mapping of group ids to a dense index.

Objectives (group advantages, dynamic sampling) and credit methods (VGPO's group min-max,
SAYO's within-group spread) all reduce per group; they share this layer, so the mapping
lives here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """Map arbitrary (non-contiguous, possibly negative) ids [B] to 0..G-1; returns (index, G).

    Raises:
        ValueError: naming ``group_ids`` when it is not a 1-D integer tensor.
    """
    if group_ids.dim() != 1:
        raise ValueError(f"group_ids must be [B], got shape {tuple(group_ids.shape)}")
    if group_ids.dtype.is_floating_point or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got {group_ids.dtype}")
    uniq, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, int(uniq.numel())


__all__ = ["dense_group_index"]
