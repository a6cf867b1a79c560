"""Each credit method's target quantity, measured where the method acts (issue 14).

A credit method can only be judged by what it is meant to move, at its own layers and
tokens; these functions measure that on any batch (held-out validation included), for the
method being trained or for a default instance of it (so a DAPO run reports the same
quantities as its baseline). Every measurement calls the method's own functions with the
method's own settings; nothing is re-implemented here:

* EASE (arXiv 2605.30912): the ungated KL(p || q) of :func:`ease_attention_loss` (every
  response with evidence counts, not only the high-reward ones) and the evidence
  attention ratio (:func:`evidence_attention_ratio`), both at EASE's layer.
* SAYO (arXiv 2602.08241): :func:`sayo_attention_reward` of its selected tokens (its
  layer, entropy selection and pairing): the bonus ``r_attn`` and the region-to-image
  ratio ``a_reg / a_img`` (batch means of the numerator and the denominator).
* VGPO (arXiv 2604.09349): the visual focus :func:`focus_cosine` (its hidden position),
  binned by relative response position (:func:`visual_mass_by_position`): the "forgetting
  curve"; its slope is the least-squares slope over the filled bins, per unit of relative
  position (negative = the focus fades along the response).
* AT-RL (arXiv 2602.11455): :func:`atrl_token_weights` (its layers, clustering, cluster
  size): clusters per response, anchor share and the standard deviation of the weights
  over real tokens (0 when the method cannot act, e.g. one cluster per response).
* VPPO (arXiv 2510.09285) and PAPO (arXiv 2507.06448): the visual dependency of the
  response tokens, VPPO's :func:`token_dependency` (the k3 estimate of
  KL(pi(.|image) || pi(.|masked image)) at the sampled token, VPPO's patch blackening):
  its mean over response tokens and over the top ``top_frac`` tokens VPPO keeps. One
  perturbation for every arm (a PAPO run is measured with VPPO's, as DAPO is), so the
  arms compare on one scale.

Plus the evidence attention ratio at every layer present in the signals.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visgrpo.credit.atrl import ATRLCredit, atrl_token_weights
from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics, top_fraction_mask
from visgrpo.credit.diagnostics import evidence_attention_ratio, visual_mass_by_position
from visgrpo.credit.ease import EASECredit, ease_attention_loss
from visgrpo.credit.sayo import SAYOCredit, region_mask_from, sayo_attention_reward
from visgrpo.credit.vgpo import VGPOCredit, focus_cosine
from visgrpo.credit.vppo import VPPOCredit, token_dependency
from visgrpo.data.signals import SignalRequest, Signals


def binned_slope(curve: Tensor) -> float:
    """Least-squares slope of ``curve`` [bins] against the bin centres ``(k + 0.5) / bins``
    (relative position in [0, 1]), over the finite bins; NaN with fewer than two."""
    bins = curve.numel()
    x = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    y = curve.double().cpu()
    ok = torch.isfinite(y)
    if int(ok.sum()) < 2:
        return math.nan
    x, y = x[ok], y[ok]
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def layer_evidence_ratios(signals: Signals) -> Metrics:
    """``{"evidence_ratio_L<l>": ratio}`` for every layer of ``signals.image_attention``
    (skipped without an evidence mask; a layer where no response is defined is left out)."""
    if signals.evidence_mask is None:
        return {}
    out: Metrics = {}
    for layer in sorted(signals.image_attention):
        _, m = evidence_attention_ratio(
            signals.image_attention[layer], signals.image_mask, signals.evidence_mask, signals.response_mask
        )
        if not math.isnan(float(m["evidence_ratio"])):
            out[f"evidence_ratio_L{layer}"] = m["evidence_ratio"]
    return out


def ease_target(method: EASECredit, signals: Signals) -> Metrics:
    """EASE's KL to the evidence target (ungated) and the evidence ratio at its layer."""
    layers = method.resolve(method.layer)
    attn = signals.mean_image_attention(layers).detach()  # [B, T, N]
    out: Metrics = {"layer": float(layers[0])}
    if signals.evidence_target is not None:
        ones = torch.ones(attn.shape[0], device=attn.device)  # every response passes the gate
        _, m = ease_attention_loss(attn, signals.image_mask, signals.evidence_target, signals.response_mask, ones,
                                   reward_threshold=0.5, max_tokens=method.max_tokens, direction=method.direction,
                                   eps=method.eps)
        if m["gated"] > 0:
            out["kl"] = m["kl"]
    if signals.evidence_mask is not None:
        _, m = evidence_attention_ratio(attn, signals.image_mask, signals.evidence_mask, signals.response_mask)
        if not math.isnan(float(m["evidence_ratio"])):
            out["evidence_ratio"] = m["evidence_ratio"]
    return out


def sayo_target(method: SAYOCredit, signals: Signals) -> Metrics:
    """SAYO's bonus and the region-to-image attention ratio of its selected tokens."""
    if signals.entropies is None or (signals.evidence_mask is None and signals.region_labels is None):
        return {}
    own = method.entropy_attention_pairing == "authors"
    attn = signals.mean_image_attention(method.resolve(method.layer), own=own)  # [B, T, N]
    _, m = sayo_attention_reward(attn, signals.image_mask, region_mask_from(signals, method.region_threshold),
                                 signals.entropies, signals.response_mask, rho=method.rho, eps=method.eps,
                                 pairing=method.entropy_attention_pairing, rounding=method.selection_rounding)
    out: Metrics = {"reward": m["reward"]}
    if float(m["a_img"]) > 0:
        out["region_ratio"] = m["a_reg"] / m["a_img"]
    return out


def vgpo_target(method: VGPOCredit, signals: Signals, bins: int = 10) -> Metrics:
    """VGPO's visual focus by relative response position (``focus_pos<k>``) and its slope."""
    hidden = getattr(signals, method._hidden_field)
    if hidden is None or signals.image_hidden_mean is None:
        return {}
    w = focus_cosine(hidden.float(), signals.image_hidden_mean)  # [B, T] raw cosine, no min-max
    curve, counts = visual_mass_by_position(w, signals.response_mask, bins)  # [bins]
    out: Metrics = {f"focus_pos{k:02d}": curve[k] for k in range(bins) if counts[k] > 0}
    resp = signals.response_mask.bool()
    out["focus_mean"] = (w * resp).sum() / resp.sum().clamp_min(1)
    slope = binned_slope(curve)
    if not math.isnan(slope):
        out["focus_slope"] = slope
    return out


def atrl_target(method: ATRLCredit, signals: Signals) -> Metrics:
    """AT-RL's clusters per response, anchor share and spread (std) of its token weights."""
    layers = method.resolve(method.layers)
    mask = signals.response_mask.bool()
    W, m = atrl_token_weights(
        signals.layer_maps("image_attention", layers), signals.image_mask, mask,
        signals.mean_response_attention(layers) if method.uses_graph else None,
        anchor_frac=method.anchor_frac, top_k=method.top_k, cluster_size=method.cluster_size,
        w_min=method.w_min, w_max=method.w_max, anchors_only=method.anchors_only, clustering=method.clustering,
        edge_scale=method.edge_scale, seed=method.seed,
    )
    real = W[mask].double()
    std = real.std(unbiased=False) if real.numel() else real.new_zeros(())
    return {"clusters_per_response": m["clusters_per_response"], "anchor_share": m["anchor_share"],
            "weight_std": std.float()}


def vppo_target(method: VPPOCredit, signals: Signals) -> Metrics:
    """Visual dependency of the response tokens: mean ``S_t`` and mean over VPPO's kept tokens."""
    if signals.masked_logp is None or signals.logp is None:
        return {}
    mask = signals.response_mask.bool()  # [B, T]
    if not bool(mask.any()):
        return {}
    dep = token_dependency(signals.logp.detach(), signals.masked_logp, signals.response_mask)  # [B, T]
    keep, _ = top_fraction_mask(dep, mask, method.top_frac, rounding="ceil")  # [B, T]
    return {"dependency": dep[mask].mean(), "dependency_top": (dep * keep).sum() / keep.sum().clamp_min(1)}


TARGETS = {"ease": ease_target, "sayo": sayo_target, "vgpo": vgpo_target, "atrl": atrl_target, "vppo": vppo_target}


def target_methods(active: list[CreditMethod], num_layers: int) -> list[CreditMethod]:
    """One instance per method of :data:`TARGETS`: the active one (its own settings) when
    trained, else a default instance (so every run measures every target); depth bound."""
    by_name = {m.name: m for m in active if m.name in TARGETS}
    out = [by_name.get(name) or CREDIT_METHODS.get(name)() for name in TARGETS]
    for m in out:
        m.signal_request(num_layers)
    return out


def target_request(methods: list[CreditMethod], num_layers: int) -> SignalRequest:
    """Detached signals measuring ``methods``' targets, plus image attention at every layer
    (grad layers are asked for as plain image attention: measurements need no graph)."""
    req = SignalRequest(image_attention_layers=frozenset(range(num_layers)))
    for m in methods:
        r = m.signal_request(num_layers)
        req = req.union(SignalRequest(
            image_attention_layers=r.image_attention_layers | r.grad_attention_layers,
            response_attention_layers=r.response_attention_layers, hidden_states=r.hidden_states,
            entropies=r.entropies, own_attention_layers=r.own_attention_layers, masked_logp=r.masked_logp,
        ))
    return req


@torch.no_grad()
def target_metrics(methods: list[CreditMethod], signals: Signals) -> Metrics:
    """Every target of ``methods`` (keys ``<method>/<quantity>``) plus the per-layer
    evidence ratios, from detached ``signals``."""
    out: Metrics = dict(layer_evidence_ratios(signals))
    for m in methods:
        out.update({f"{m.name}/{k}": v for k, v in TARGETS[m.name](m, signals).items()})
    return out


__all__ = [
    "TARGETS",
    "atrl_target",
    "binned_slope",
    "ease_target",
    "layer_evidence_ratios",
    "sayo_target",
    "target_methods",
    "target_metrics",
    "target_request",
    "vgpo_target",
    "vppo_target",
]
