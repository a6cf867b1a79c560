"""Group-relative outcome advantages: GRPO and Dr.GRPO.

GRPO (DeepSeekMath, arXiv 2402.03300, section 4.1.2, outcome supervision):
``A_i = (R_i - mean_g R) / (std_g R + eps)``. Dr.GRPO (arXiv 2503.20783, section 3.1,
"GRPO Done Right") drops the std division: ``A_i = R_i - mean_g R``.

Choices (see docs/methods.md, Base objectives):
- ``std_g`` is the UNBIASED (Bessel-corrected, divisor ``n_g - 1``) standard deviation of
  the group, as in TRL's ``GRPOTrainer`` (``torch.std``) and verl's ``compute_grpo_outcome_advantage``.
- A group whose rewards are all exactly equal (this includes singleton groups) gets
  advantage exactly 0, never NaN and never ``0 / eps`` round-off.
- Groups are given by arbitrary integer ``group_ids`` (not necessarily contiguous, sorted or
  dense); all reductions are vectorised with ``index_add_`` / ``scatter_reduce``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from visgrpo.data.groups import dense_group_index
from visgrpo.registry import Registry

AdvantageFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
ADVANTAGES: Registry[AdvantageFn] = Registry("advantage")


def _group_stats(rewards: Tensor, group_ids: Tensor) -> dict[str, Tensor]:
    """Per-response group statistics, gathered back to [B].

    Returns a dict with ``dev`` (R - group mean) [B], ``std`` (unbiased group std) [B],
    ``equal`` (group has all-equal rewards) [B] bool and ``n_groups`` (0-dim long).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be [B], got shape {tuple(rewards.shape)}")
    if group_ids.shape != rewards.shape:
        raise ValueError(
            f"group_ids has shape {tuple(group_ids.shape)} but rewards has {tuple(rewards.shape)}"
        )
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards contains NaN or inf")
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    x = rewards.to(dtype)  # [B]
    idx, G = dense_group_index(group_ids)  # [B], int
    zeros = torch.zeros(G, dtype=dtype, device=x.device)  # [G]
    count = zeros.index_add(0, idx, torch.ones_like(x))  # [G]
    mean = zeros.index_add(0, idx, x) / count  # [G]
    dev = x - mean[idx]  # [B]
    sq = zeros.index_add(0, idx, dev * dev)  # [G]
    std = torch.sqrt(sq / (count - 1).clamp(min=1))  # [G] unbiased (Bessel)
    gmax = zeros.scatter_reduce(0, idx, x, reduce="amax", include_self=False)  # [G]
    gmin = zeros.scatter_reduce(0, idx, x, reduce="amin", include_self=False)  # [G]
    equal_g = gmax == gmin  # [G]
    return {
        "dev": dev,
        "std": std[idx],
        "equal": equal_g[idx],
        "n_groups": torch.tensor(G),
        "frac_equal_groups": equal_g.to(torch.float32).mean(),
    }


def _metrics(rewards: Tensor, adv: Tensor, stats: dict[str, Tensor]) -> dict[str, Tensor]:
    r = rewards.detach().to(torch.float32)
    a = adv.detach().to(torch.float32)
    return {
        "reward_mean": r.mean(),
        "reward_std": r.std(unbiased=False),
        "adv_mean": a.mean(),
        "adv_std": a.std(unbiased=False),
        "adv_abs_max": a.abs().max(),
        "groups": stats["n_groups"].to(torch.float32),
        "frac_equal_reward_groups": stats["frac_equal_groups"],
    }


@ADVANTAGES.register("grpo")
def grpo_advantages(
    rewards: Tensor, group_ids: Tensor, eps: float = 1e-6
) -> tuple[Tensor, dict[str, Tensor]]:
    """GRPO advantage ``(R_i - mean_g) / (std_g + eps)`` (arXiv 2402.03300, sec. 4.1.2).

    Args:
        rewards: [B] float outcome rewards.
        group_ids: [B] integer prompt-group id of each response (any values, any order).
        eps: added to the (unbiased) group std.

    Returns:
        (advantages [B] float, metrics). Equal-reward and singleton groups give exactly 0.
    """
    s = _group_stats(rewards, group_ids)
    adv = s["dev"] / (s["std"] + eps)  # [B]
    adv = torch.where(s["equal"], torch.zeros_like(adv), adv)  # [B]
    return adv, _metrics(rewards, adv, s)


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(
    rewards: Tensor, group_ids: Tensor, eps: float = 1e-6
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dr.GRPO advantage ``R_i - mean_g`` (arXiv 2503.20783, sec. 3.1); ``eps`` is unused.

    Args:
        rewards: [B] float outcome rewards.
        group_ids: [B] integer prompt-group id of each response.
        eps: accepted for a uniform signature; not used.

    Returns:
        (advantages [B] float, metrics). Equal-reward and singleton groups give exactly 0.
    """
    del eps
    s = _group_stats(rewards, group_ids)
    adv = torch.where(s["equal"], torch.zeros_like(s["dev"]), s["dev"])  # [B]
    return adv, _metrics(rewards, adv, s)


def compute_advantages(
    name: str, rewards: Tensor, group_ids: Tensor, eps: float = 1e-6
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dispatch to the advantage estimator registered as ``name`` (``grpo`` | ``dr_grpo``).

    Raises:
        KeyError: for an unknown ``name``, listing the valid ones.
    """
    return ADVANTAGES.get(name)(rewards, group_ids, eps=eps)
