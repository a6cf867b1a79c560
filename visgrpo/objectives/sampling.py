"""DAPO dynamic sampling (arXiv 2503.14476, section 3.2, eq. 11 constraint).

A group whose rewards are all equal (all right or all wrong) has zero GRPO advantage and
contributes no gradient; DAPO drops such groups and keeps sampling prompts until the batch
holds the target number of groups, up to ``max_tries`` rounds. ``dynamic_sampling_filter``
decides which rows to keep for one round (vectorised); ``DynamicSamplingAccumulator``
collects kept groups across rounds and counts rounds and drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from visgrpo.data.groups import dense_group_index


def dynamic_sampling_filter(
    rewards: Tensor,
    group_ids: Tensor,
    atol: float = 1e-6,
    correct_threshold: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Keep mask [B] bool: rows whose group has reward spread ``max - min > atol``.

    Singleton groups are dropped (no within-group contrast).

    Args:
        rewards: [B] float. group_ids: [B] integer group id per response (any values).
        atol: spread at or below which a group counts as all-equal.
        correct_threshold: if given, dropped groups are also split into all-correct
            (value >= threshold) and all-wrong (value < threshold).

    Returns:
        (keep [B] bool, metrics: groups_total, groups_kept, groups_dropped (= all-equal),
        and with ``correct_threshold`` groups_all_correct, groups_all_wrong).
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be [B]"
        )
    if atol < 0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    x = rewards.detach().to(torch.float64)  # [B]
    # One device for the scatter: the rewards' (a reward head scores on the CPU while the
    # rollout's group ids may live on the GPU).
    idx, G = dense_group_index(group_ids.to(x.device))  # [B]
    zeros = torch.zeros(G, dtype=x.dtype, device=x.device)  # [G]
    gmax = zeros.scatter_reduce(0, idx, x, reduce="amax", include_self=False)  # [G]
    gmin = zeros.scatter_reduce(0, idx, x, reduce="amin", include_self=False)  # [G]
    keep_g = (gmax - gmin) > atol  # [G]
    metrics = {
        "groups_total": torch.tensor(float(G)),
        "groups_kept": keep_g.sum().to(torch.float32),
        "groups_dropped": (~keep_g).sum().to(torch.float32),
    }
    if correct_threshold is not None:
        metrics["groups_all_correct"] = (~keep_g & (gmin >= correct_threshold)).sum().float()
        metrics["groups_all_wrong"] = (~keep_g & (gmin < correct_threshold)).sum().float()
    return keep_g[idx], metrics


class DynamicSamplingAccumulator:
    """Collects informative groups over sampling rounds until ``target_groups`` are held.

    Usage::

        acc = DynamicSamplingAccumulator(target_groups=8, max_tries=5)
        while not acc.done:
            rewards, group_ids, items = sample_round()
            acc.add(rewards, group_ids, items)
        batch_items, batch_rewards, batch_groups = acc.items(), acc.rewards(), acc.group_ids()

    Kept groups are taken in order of first appearance; once the target is reached the
    remaining kept groups of that round are discarded (counted as ``groups_surplus``).
    ``group_ids()`` renumbers the collected groups 0..K-1, so ids may repeat across rounds.

    Args:
        target_groups: number of groups wanted (>= 1).
        max_tries: maximum number of rounds (>= 1).
        atol: all-equal tolerance passed to ``dynamic_sampling_filter``.
    """

    def __init__(self, target_groups: int, max_tries: int, atol: float = 1e-6) -> None:
        if target_groups < 1:
            raise ValueError(f"target_groups must be >= 1, got {target_groups}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.target_groups = target_groups
        self.max_tries = max_tries
        self.atol = atol
        self.rounds = 0
        self.groups_seen = 0
        self.groups_dropped = 0
        self.groups_surplus = 0
        self._groups: list[tuple[Tensor, list[Any]]] = []

    @property
    def groups_kept(self) -> int:
        return len(self._groups)

    @property
    def full(self) -> bool:
        return self.groups_kept >= self.target_groups

    @property
    def done(self) -> bool:
        """True once full or after ``max_tries`` rounds."""
        return self.full or self.rounds >= self.max_tries

    def add(self, rewards: Tensor, group_ids: Tensor, items: Sequence[Any] | None = None) -> Tensor:
        """Filter one round; store kept groups (rewards and per-row items); return keep [B].

        The returned mask marks the rows actually stored (surplus groups are False).

        Raises:
            RuntimeError: if called when already ``done``. ValueError: bad ``items`` length.
        """
        if self.done:
            raise RuntimeError("DynamicSamplingAccumulator is done; no more rounds allowed")
        if items is not None and len(items) != rewards.shape[0]:
            raise ValueError(f"items has {len(items)} entries, rewards has {rewards.shape[0]}")
        keep, m = dynamic_sampling_filter(rewards, group_ids, atol=self.atol)
        self.rounds += 1
        self.groups_seen += int(m["groups_total"])
        self.groups_dropped += int(m["groups_dropped"])
        stored = torch.zeros_like(keep)  # [B]
        order: list[int] = []
        rows_of: dict[int, list[int]] = {}
        for row, gid in enumerate(group_ids.tolist()):
            if gid not in rows_of:
                rows_of[gid] = []
                order.append(gid)
            rows_of[gid].append(row)
        for gid in order:
            rows = rows_of[gid]
            if not bool(keep[rows[0]]):
                continue
            if self.full:
                self.groups_surplus += 1
                continue
            idx = torch.tensor(rows, dtype=torch.long, device=rewards.device)
            group_items = [items[r] for r in rows] if items is not None else list(rows)
            self._groups.append((rewards.detach()[idx], group_items))
            stored[idx] = True
        return stored

    def rewards(self) -> Tensor:
        """[N] rewards of the collected rows, group by group."""
        if not self._groups:
            return torch.zeros(0)
        return torch.cat([r for r, _ in self._groups])

    def group_ids(self) -> Tensor:
        """[N] long: collected rows' group index 0..K-1 (renumbered)."""
        return (
            torch.cat(
                [
                    torch.full((len(r),), k, dtype=torch.long)
                    for k, (r, _) in enumerate(self._groups)
                ]
            )
            if self._groups
            else torch.zeros(0, dtype=torch.long)
        )

    def items(self) -> list[Any]:
        """Per-row items of the collected rows (row indices within their round if none given)."""
        return [it for _, group_items in self._groups for it in group_items]

    def metrics(self) -> dict[str, float]:
        return {
            "sampling_rounds": float(self.rounds),
            "groups_seen": float(self.groups_seen),
            "groups_dropped": float(self.groups_dropped),
            "groups_kept": float(self.groups_kept),
            "groups_surplus": float(self.groups_surplus),
            "batch_full": float(self.full),
        }
