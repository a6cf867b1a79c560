"""Attention diagnostics logged for every credit method, the baseline included (issue 5).

* evidence attention ratio: the share of a response's image attention that falls on the
  evidence tokens, divided by the evidence tokens' share of the image tokens (1 = no
  preference, > 1 = looks at the evidence). Coverage-weighted: a token half covered by a
  box counts half, in both the numerator and the share.
* visual attention mass by response position: attention mass of each response row on the
  image tokens (not renormalised), averaged in ``bins`` relative-position bins over all
  tokens of the batch: the "visual forgetting" curve (does attention to the image fade
  as the response gets longer?).
* anchor-token share: fraction of real tokens whose image-attention mass is at least
  ``factor`` (2) times their response's mean (AT-RL's anchors are the high mode of that
  bimodal distribution), and the share of image-attention mass carried by the top 15%.

All pure functions over detached tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visgrpo.credit.base import Metrics, top_fraction_mask
from visgrpo.data.signals import Signals


def binned_slope(curve: Tensor) -> float:
    """Least-squares slope of ``curve`` [bins] against the bin centres ``(k + 0.5) / bins``
    (relative position in [0, 1]), over the finite bins; NaN with fewer than two.
    """
    bins = curve.numel()
    x = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    y = curve.double().cpu()
    ok = torch.isfinite(y)
    if int(ok.sum()) < 2:
        return math.nan
    x, y = x[ok], y[ok]
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def visual_mass(attn: Tensor, image_mask: Tensor, response_mask: Tensor) -> Tensor:
    """[B, T] attention mass of each response row on the valid image tokens (0 at padding)."""
    m = (attn.detach().float() * image_mask.bool()[:, None, :]).sum(-1)  # [B, T]
    return m.masked_fill(~response_mask.bool(), 0.0)


def evidence_attention_ratio(
    attn: Tensor, image_mask: Tensor, evidence_mask: Tensor, response_mask: Tensor, eps: float = 1e-12
) -> tuple[Tensor, Metrics]:
    """Evidence attention ratio per response.

    Args:
        attn: [B, T, N] response-to-image attention.
        image_mask: [B, N] bool.
        evidence_mask: [B, N] coverage in [0, 1].
        response_mask: [B, T] bool.

    Returns:
        ``(ratio [B] (NaN where a response has no evidence, no image or no real token),
        {"evidence_ratio": batch mean over the defined ones, "evidence_ratio_undefined": n})``.
    """
    img = image_mask.bool()
    resp = response_mask.bool()
    a = attn.detach().float() * img[:, None, :]  # [B, T, N]
    p = a / (a.sum(-1, keepdim=True) + eps)  # [B, T, N] over image tokens
    cov = evidence_mask.float().clamp(0, 1) * img  # [B, N]
    on_ev = (p * cov[:, None, :]).sum(-1)  # [B, T]
    n = resp.sum(-1)  # [B]
    mass = (on_ev * resp).sum(-1) / n.clamp_min(1)  # [B]
    share = cov.sum(-1) / img.sum(-1).clamp_min(1)  # [B]
    ok = (share > 0) & (n > 0) & img.any(-1)
    ratio = torch.where(ok, mass / share.clamp_min(eps), torch.full_like(mass, float("nan")))
    mean = ratio[ok].mean() if bool(ok.any()) else torch.tensor(float("nan"))
    return ratio, {"evidence_ratio": mean, "evidence_ratio_undefined": float((~ok).sum())}


def visual_mass_by_position(mass: Tensor, response_mask: Tensor, bins: int = 10) -> tuple[Tensor, Tensor]:
    """Mean of ``mass`` [B, T] per relative-position bin over all real tokens of the batch.

    Token with ordinal o in a response of n real tokens falls in bin ``floor(o * bins / n)``.

    Returns:
        ``(curve [bins] (NaN in empty bins), counts [bins])``.
    """
    resp = response_mask.bool()
    ordinal = resp.long().cumsum(-1) - 1  # [B, T]
    n = resp.sum(-1, keepdim=True).clamp_min(1)  # [B, 1]
    b = (ordinal * bins) // n  # [B, T]
    b = b.clamp(0, bins - 1).masked_fill(~resp, bins)  # padding -> overflow bin
    flat = b.reshape(-1)  # [B*T]
    sums = mass.new_zeros(bins + 1, dtype=torch.float32).scatter_add(0, flat, mass.detach().float().reshape(-1))
    counts = mass.new_zeros(bins + 1, dtype=torch.float32).scatter_add(0, flat, resp.float().reshape(-1))
    curve = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))
    return curve[:bins], counts[:bins]


def anchor_share(mass: Tensor, response_mask: Tensor, factor: float = 2.0, top_frac: float = 0.15) -> Metrics:
    """Share of real tokens with ``mass >= factor * mean mass`` of their response, and the
    share of the batch's image-attention mass on each response's top ``top_frac`` tokens.
    """
    resp = response_mask.bool()
    m = mass.detach().float()
    n = resp.sum(-1, keepdim=True).clamp_min(1)  # [B, 1]
    mean = m.sum(-1, keepdim=True) / n  # [B, 1]
    high = resp & (m >= factor * mean) & (mean > 0)  # [B, T]
    top, _ = top_fraction_mask(m, resp, top_frac)  # [B, T]
    total = (m * resp).sum().clamp_min(1e-12)
    tokens = resp.sum().clamp_min(1)
    return {
        "anchor_share": high.sum() / tokens,
        "top15_mass_share": (m * top).sum() / total,
    }


def batch_diagnostics(signals: Signals, layer: int | None = None, bins: int = 10) -> Metrics:
    """All diagnostics for one batch, keys ``diag/...`` (scalars, plus the curve tensor).

    Args:
        signals: the batch's signals; uses ``image_attention[layer]`` (skipped if absent)
            and ``evidence_mask`` (the ratio is skipped without it).
        layer: attention layer; default the highest layer in ``signals.image_attention``.
        bins: relative-position bins of the forgetting curve.
    """
    if not signals.image_attention:
        return {}
    if layer is None:
        layer = max(signals.image_attention)
    if layer not in signals.image_attention:
        return {}
    attn = signals.image_attention[layer]  # [B, T, N]
    mass = visual_mass(attn, signals.image_mask, signals.response_mask)  # [B, T]
    resp = signals.response_mask.bool()
    out: Metrics = {"diag/visual_mass": (mass * resp).sum() / resp.sum().clamp_min(1)}
    curve, counts = visual_mass_by_position(mass, resp, bins)
    out["diag/visual_mass_by_position"] = curve
    for k in range(bins):
        if counts[k] > 0:
            out[f"diag/visual_mass_pos{k:02d}"] = curve[k]
    filled = (counts > 0).nonzero().squeeze(-1)
    if filled.numel() >= 2 and curve[filled[0]] > 0:
        out["diag/visual_forgetting"] = curve[filled[-1]] / curve[filled[0]]
    out.update({f"diag/{k}": v for k, v in anchor_share(mass, resp).items()})
    if signals.evidence_mask is not None:
        _, m = evidence_attention_ratio(attn, signals.image_mask, signals.evidence_mask, resp)
        if not torch.isnan(torch.as_tensor(m["evidence_ratio"])):
            out["diag/evidence_ratio"] = m["evidence_ratio"]
        out["diag/evidence_ratio_undefined"] = m["evidence_ratio_undefined"]
    return out


__all__ = [
    "anchor_share",
    "batch_diagnostics",
    "evidence_attention_ratio",
    "visual_mass",
    "visual_mass_by_position",
]
