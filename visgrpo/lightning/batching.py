"""Splitting a rollout batch into micro-batches that keep prompt groups whole.

Groups never straddle micro-batches (nor ranks), so group statistics (advantages, VGPO's
trajectory weights) are exact inside every micro-batch, and the loss normalisers are
computed once for the whole batch (docs/methods.md, Base objectives, "Aggregation").
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_micro_batches(group_ids: Tensor, micro_batch_size: int) -> list[Tensor]:
    """Indices of micro-batches made of whole groups, in first-appearance order of the groups.

    Args:
        group_ids: [B] long group id of each response.
        micro_batch_size: target number of responses per micro-batch; a group larger than
            this forms a micro-batch of its own.

    Returns:
        A list of 1-D long index tensors that partition ``range(B)``.
    """
    if micro_batch_size <= 0:
        raise ValueError(f"micro_batch_size must be positive, got {micro_batch_size}")
    order: list[int] = []
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        if g not in members:
            members[g] = []
            order.append(g)
        members[g].append(i)
    batches: list[list[int]] = []
    current: list[int] = []
    for g in order:
        idx = members[g]
        if current and len(current) + len(idx) > micro_batch_size:
            batches.append(current)
            current = []
        current = current + idx
    if current:
        batches.append(current)
    return [torch.tensor(b, dtype=torch.long, device=group_ids.device) for b in batches]
