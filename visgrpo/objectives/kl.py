"""KL-to-reference estimators k1, k2, k3 (Schulman, "Approximating KL Divergence", 2020).

With ``d = ref_logp - logp`` on the sampled tokens (samples from the current policy pi):
``k1 = -d`` (unbiased, high variance), ``k2 = d^2 / 2`` (biased, low variance),
``k3 = exp(d) - d - 1`` (unbiased for KL(pi || ref), non-negative, low variance; the GRPO
penalty, arXiv 2402.03300 eq. 4). ``d`` is 0 on padding; for k3 it is clamped to [-20, 20]
before ``exp`` to avoid overflow (changes nothing for |d| <= 20).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from visgrpo.objectives._common import check_mask, check_same_shape, masked_mean
from visgrpo.registry import Registry

KLFn = Callable[[Tensor], Tensor]
KL_ESTIMATORS: Registry[KLFn] = Registry("kl estimator")


@KL_ESTIMATORS.register("k1")
def k1(d: Tensor) -> Tensor:
    """``k1 = -d`` with ``d = ref_logp - logp`` (elementwise)."""
    return -d


@KL_ESTIMATORS.register("k2")
def k2(d: Tensor) -> Tensor:
    """``k2 = d^2 / 2`` (elementwise)."""
    return 0.5 * d * d


@KL_ESTIMATORS.register("k3")
def k3(d: Tensor) -> Tensor:
    """``k3 = exp(d) - d - 1`` (elementwise, d clamped to [-20, 20])."""
    d = d.clamp(-20.0, 20.0)
    return torch.exp(d) - d - 1.0


def kl_penalty(
    name: str, logp: Tensor, ref_logp: Tensor, response_mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token KL estimate [B, T] (0 on padding) with estimator ``name`` (k1 | k2 | k3).

    Args:
        logp: [B, T] current-policy log-probs (gradient flows through it).
        ref_logp: [B, T] reference log-probs (treated as constant).
        response_mask: [B, T] bool.

    Returns:
        (kl [B, T], metrics: kl_mean over real tokens).

    Raises:
        KeyError: unknown estimator, listing the valid ones. ValueError: shape mismatch.
    """
    fn = KL_ESTIMATORS.get(name)
    check_same_shape(logp, ref_logp, "logp", "ref_logp")
    mask = check_mask(response_mask, logp)  # [B, T]
    d = torch.where(mask, ref_logp.detach() - logp, torch.zeros_like(logp))  # [B, T]
    kl = torch.where(mask, fn(d), torch.zeros_like(d))  # [B, T]
    return kl, {"kl_mean": masked_mean(kl, mask)}
