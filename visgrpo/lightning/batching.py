"""Splitting a rollout batch into mini-batches (one optimiser step each) and those into
micro-batches (one forward/backward each), both keeping prompt groups whole.

Groups never straddle micro-batches (nor ranks), so group statistics (advantages, VGPO's
trajectory weights) are exact inside every micro-batch; what spans the whole batch (the
loss normalisers, the credit methods' batch statistics such as VGPO's focus min-max) is
computed once for the whole batch by ``RLVRModule.plan`` (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from visgrpo.data.batch import RolloutBatch


def _groups_in_order(group_ids: Tensor) -> tuple[list[int], dict[int, list[int]]]:
    """``(group ids in first-appearance order, row indices of each group)``."""
    order: list[int] = []
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        if g not in members:
            members[g] = []
            order.append(g)
        members[g].append(i)
    return order, members


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
    order, members = _groups_in_order(group_ids)
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


def group_mini_batches(group_ids: Tensor, groups_per_batch: int | None) -> list[Tensor]:
    """Indices of the mini-batches of a rollout batch: ``groups_per_batch`` whole prompt
    groups each, in first-appearance order of the groups (the last may hold fewer).

    verl's ``ppo_mini_batch_size`` / EasyR1's ``worker.actor.global_batch_size`` count
    prompts, and their rows are grouped by prompt: ``split`` of the repeated batch in
    https://github.com/huaixuheqing/VPPO-RL/blob/a23c54b/verl/workers/actor/dp_actor.py#L255
    after ``global_batch_size *= rollout.n`` in
    https://github.com/huaixuheqing/VPPO-RL/blob/a23c54b/verl/workers/fsdp_workers.py#L135.
    A mini-batch is the responses of ``groups_per_batch`` prompts.

    Args:
        group_ids: [B] long group id of each response.
        groups_per_batch: prompts per mini-batch; None = one mini-batch of every row.

    Returns:
        A list of 1-D long index tensors that partition ``range(B)``.
    """
    if groups_per_batch is None:
        return [torch.arange(group_ids.shape[0], device=group_ids.device)]
    if groups_per_batch <= 0:
        raise ValueError(f"groups_per_batch must be positive, got {groups_per_batch}")
    order, members = _groups_in_order(group_ids)
    batches = [[i for g in order[s : s + groups_per_batch] for i in members[g]]
               for s in range(0, len(order), groups_per_batch)]
    return [torch.tensor(b, dtype=torch.long, device=group_ids.device) for b in batches]


@dataclass
class StepPlan:
    """What every micro-batch of one RL step shares (step 3 of the module docstring).

    Attributes:
        rollout: the step's responses; rewards: [B] outcome rewards.
        micro: index tensors of the micro-batches (whole groups), mini-batch after mini-batch.
        mini: for each mini-batch, the positions in ``micro`` of its micro-batches.
        normaliser: per mini-batch, the objective's loss normaliser over that mini-batch
            (all ranks), as verl / EasyR1 normalise each optimiser step's loss.
        aux_normaliser: per mini-batch, the credit methods' auxiliary-loss normalisers.
        batch_stats: the credit methods' batch statistics over the whole rollout batch (all
            ranks), or None when one micro-batch is the whole batch (a method then takes them
            from its signals). Never per mini-batch.
    """

    rollout: RolloutBatch
    rewards: Tensor
    micro: list[Tensor]
    mini: list[list[int]]
    normaliser: list[Tensor]
    aux_normaliser: list[dict | Tensor | None]
    batch_stats: dict[str, Tensor] | None


@dataclass
class Prepared:
    """What the loss of a micro-batch takes from the rollout policy: ``old_logp`` [b, T]
    (None: on-policy, the loss forward's own ``logp.detach()``), advantages [b, T],
    ``ref_logp`` [b, T] (None without KL) and the masked-image log-probs [b, T] (None when no
    credit method asked), which every update reuses unless its loss forward recomputes them
    (both authors' codes compute them once per rollout batch).
    """

    old_logp: Tensor | None
    adv: Tensor
    ref: Tensor | None
    masked_logp: Tensor | None = None
