"""Per-token policy-gradient surrogates: PPO clip (+ dual clip), GSPO, SAPO.

Every loss here maps ``(logp, old_logp, advantages, response_mask)`` to a per-token loss
matrix [B, T] (0 on padding) and a metrics dict; aggregation over tokens/sequences is a
separate axis (``aggregation.py``). Advantages may be [B] (broadcast to every token) or
[B, T] (per-token credit). Log-ratios are computed only on real tokens (0 elsewhere, so
padding garbage can never produce inf/NaN gradients) and clamped to [-20, 20] before
``exp`` (as verl does), which only matters for ratios beyond e^20.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from visgrpo.objectives._common import (
    broadcast_advantages,
    check_mask,
    check_same_shape,
    masked_fraction,
    masked_mean,
    masked_min_max,
)
from visgrpo.registry import Registry

PolicyLossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")

_LOG_RATIO_CLAMP = 20.0


def _prepare(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, response_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes; return (mask [B,T] bool, masked log-ratio [B,T], advantages [B,T])."""
    check_same_shape(logp, old_logp, "logp", "old_logp")
    mask = check_mask(response_mask, logp)  # [B, T]
    adv = broadcast_advantages(advantages, logp).to(logp.dtype)  # [B, T]
    log_ratio = torch.where(mask, logp - old_logp.detach(), torch.zeros_like(logp))  # [B, T]
    return mask, log_ratio, adv


def _ratio_metrics(ratio: Tensor, mask: Tensor, log_ratio: Tensor) -> dict[str, Tensor]:
    lo, hi = masked_min_max(ratio, mask)
    return {
        "ratio_mean": masked_mean(ratio, mask),
        "ratio_min": lo,
        "ratio_max": hi,
        # k1 estimate of KL(old || new) on the sampled tokens, as verl's ``ppo_kl``.
        "ppo_kl": masked_mean(-log_ratio, mask),
    }


def _check_eps(eps_low: float, eps_high: float) -> None:
    if not 0.0 <= eps_low < 1.0:
        raise ValueError(f"eps_low must be in [0, 1), got {eps_low}")
    if eps_high < 0.0:
        raise ValueError(f"eps_high must be >= 0, got {eps_high}")


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    clip_ratio_c: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Token-level clipped surrogate with decoupled clip range and optional dual clip.

    ``L = -min(r*A, clip(r, 1-eps_low, 1+eps_high)*A)`` with ``r = exp(logp - old_logp)``
    (PPO, arXiv 1707.06347 eq. 7; decoupled "clip-higher" eps, DAPO arXiv 2503.14476
    eq. 10). Dual clip (arXiv 1912.09729 eq. 5): for ``A < 0`` the loss is further bounded
    by ``clip_ratio_c * |A|``, i.e. ``L = min(L, -clip_ratio_c * A)``.

    Gradient w.r.t. ``logp``: ``-A*r`` where the unclipped branch is active and exactly 0
    where clipping is active, which happens for ``A > 0, r > 1+eps_high`` ("clip high"),
    ``A < 0, r < 1-eps_low`` ("clip low") and, with dual clip, ``A < 0, r > clip_ratio_c``.

    Args:
        logp: [B, T] log-probs of the sampled tokens under the current policy.
        old_logp: [B, T] log-probs under the rollout policy (treated as constant).
        advantages: [B] or [B, T].
        response_mask: [B, T] bool, real response tokens.
        eps_low, eps_high: clip range ``[1-eps_low, 1+eps_high]``.
        clip_ratio_c: dual-clip constant (> 1), or None for no dual clip.

    Returns:
        (loss [B, T] with 0 on padding, metrics: ratio_mean/min/max, clip_frac_low,
        clip_frac_high, clip_frac, dual_clip_frac, ppo_kl; fractions over real tokens).
    """
    _check_eps(eps_low, eps_high)
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1, got {clip_ratio_c}")
    mask, log_ratio, adv = _prepare(logp, old_logp, advantages, response_mask)
    ratio = torch.exp(log_ratio.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))  # [B, T]
    loss_unclipped = -adv * ratio  # [B, T]
    loss_clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)  # [B, T]
    loss = torch.maximum(loss_unclipped, loss_clipped)  # [B, T]
    neg = adv < 0  # [B, T]
    if clip_ratio_c is not None:
        bound = -adv * clip_ratio_c  # [B, T]
        dual_active = neg & (bound < loss)  # [B, T]
        loss = torch.where(neg, torch.minimum(loss, bound), loss)  # [B, T]
    else:
        dual_active = torch.zeros_like(mask)
    loss = torch.where(mask, loss, torch.zeros_like(loss))  # [B, T]
    r = ratio.detach()
    clip_high = (adv > 0) & (r > 1.0 + eps_high)  # [B, T]
    clip_low = neg & (r < 1.0 - eps_low)  # [B, T]
    metrics = _ratio_metrics(r, mask, log_ratio)
    metrics.update(
        clip_frac_low=masked_fraction(clip_low, mask),
        clip_frac_high=masked_fraction(clip_high, mask),
        clip_frac=masked_fraction(clip_low | clip_high, mask),
        dual_clip_frac=masked_fraction(dual_active, mask),
    )
    return loss, metrics


@POLICY_LOSSES.register("gspo")
def gspo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO sequence-level clipped surrogate in its GSPO-token form (arXiv 2507.18071).

    Sequence ratio (eq. 7): ``s_i = exp((1/|y_i|) * sum_t (logp - old_logp))`` over the real
    tokens, i.e. length-normalised. GSPO-token (eq. 13-14): every token uses
    ``s_{i,t} = sg[s_i] * pi(y_t) / sg[pi(y_t)]``, whose VALUE is ``s_i`` and whose gradient
    w.r.t. ``logp[i,t]`` is ``s_i``; then ``L = -min(s A, clip(s, 1-eps_low, 1+eps_high) A)``
    per token. With [B] advantages and ``seq_mean_token_mean`` aggregation this has exactly the
    gradient of the sequence-level GSPO objective (eq. 5); [B, T] advantages are allowed.

    Args:
        logp, old_logp: [B, T]; advantages: [B] or [B, T]; response_mask: [B, T] bool.
        eps_low, eps_high: sequence clip range (paper: 3e-4 / 4e-4).

    Returns:
        (loss [B, T] with 0 on padding, metrics: seq_ratio_mean/min/max over non-empty
        sequences, clip_frac_low/high/clip_frac over real tokens, ratio_mean/min/max (same
        as seq stats since every token carries ``s_i``), ppo_kl).
    """
    _check_eps(eps_low, eps_high)
    mask, log_ratio, adv = _prepare(logp, old_logp, advantages, response_mask)
    lengths = mask.sum(-1)  # [B]
    seq_log_ratio = log_ratio.sum(-1) / lengths.clamp(min=1)  # [B]
    seq_log_ratio = seq_log_ratio.detach().clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)  # [B]
    logp_real = torch.where(mask, logp, torch.zeros_like(logp))  # [B, T] no padding garbage
    log_s_tok = logp_real - logp_real.detach() + seq_log_ratio.unsqueeze(-1)  # [B, T] = log s_i
    s_tok = torch.exp(log_s_tok)  # [B, T]
    loss_unclipped = -adv * s_tok  # [B, T]
    loss_clipped = -adv * s_tok.clamp(1.0 - eps_low, 1.0 + eps_high)  # [B, T]
    loss = torch.maximum(loss_unclipped, loss_clipped)  # [B, T]
    loss = torch.where(mask, loss, torch.zeros_like(loss))  # [B, T]
    s = s_tok.detach()
    clip_high = (adv > 0) & (s > 1.0 + eps_high)  # [B, T]
    clip_low = (adv < 0) & (s < 1.0 - eps_low)  # [B, T]
    seq_ratio = torch.exp(seq_log_ratio)  # [B]
    nonempty = lengths > 0  # [B]
    lo, hi = masked_min_max(seq_ratio, nonempty)
    metrics = _ratio_metrics(s, mask, log_ratio)
    metrics.update(
        seq_ratio_mean=masked_mean(seq_ratio, nonempty),
        seq_ratio_min=lo,
        seq_ratio_max=hi,
        clip_frac_low=masked_fraction(clip_low, mask),
        clip_frac_high=masked_fraction(clip_high, mask),
        clip_frac=masked_fraction(clip_low | clip_high, mask),
    )
    return loss, metrics


@POLICY_LOSSES.register("sapo")
def sapo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SAPO soft-gated surrogate (arXiv 2511.20347, section 3): no hard clip.

    ``L = -g(r) * A`` with ``g(r) = sigmoid(tau*(r-1)) * 4/tau``, ``tau = tau_pos`` where
    ``A > 0`` and ``tau_neg`` otherwise (A = 0 gives L = 0 either way).

    Gradient: with ``sigma = sigmoid(tau*(r-1))`` and ``dr/dlogp = r``,
    ``dL/dlogp = -(4/tau) * sigma*(1-sigma) * tau * r * A = -4*sigma*(1-sigma) * r * A``.
    At ``r = 1`` (on-policy) ``sigma = 1/2`` so the weight ``4*sigma*(1-sigma) = 1`` and the
    gradient equals the unclipped policy gradient ``-A*r``; away from 1 the weight decays
    smoothly (faster for larger tau). Note the value at ``r = 1`` is ``-2A/tau`` (a constant
    offset that does not affect gradients).

    Args:
        logp, old_logp: [B, T]; advantages: [B] or [B, T]; response_mask: [B, T] bool.
        tau_pos, tau_neg: gate temperatures (> 0); paper defaults 1.0 / 1.05.

    Returns:
        (loss [B, T] with 0 on padding, metrics: ratio_mean/min/max, gate_weight_mean (mean
        of ``4*sigma*(1-sigma)``), clip_frac_low/high = fraction of real tokens whose gate
        weight fell below 0.5 with r < 1 / r > 1 (a "soft clip" indicator, our choice),
        ppo_kl).
    """
    if tau_pos <= 0 or tau_neg <= 0:
        raise ValueError(f"tau_pos and tau_neg must be > 0, got {tau_pos}, {tau_neg}")
    mask, log_ratio, adv = _prepare(logp, old_logp, advantages, response_mask)
    ratio = torch.exp(log_ratio.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))  # [B, T]
    tau = torch.where(
        adv > 0, torch.full_like(adv, tau_pos), torch.full_like(adv, tau_neg)
    )  # [B, T]
    sig = torch.sigmoid(tau * (ratio - 1.0))  # [B, T]
    gate = sig * (4.0 / tau)  # [B, T]
    loss = -gate * adv  # [B, T]
    loss = torch.where(mask, loss, torch.zeros_like(loss))  # [B, T]
    r = ratio.detach()
    weight = (4.0 * sig * (1.0 - sig)).detach()  # [B, T]
    soft_clipped = weight < 0.5  # [B, T]
    metrics = _ratio_metrics(r, mask, log_ratio)
    metrics.update(
        gate_weight_mean=masked_mean(weight, mask),
        clip_frac_low=masked_fraction(soft_clipped & (r < 1.0), mask),
        clip_frac_high=masked_fraction(soft_clipped & (r > 1.0), mask),
    )
    return loss, metrics
