"""Each credit method's target quantity, measured where the method acts (issue 14).

A credit method can only be judged by what it is meant to move, at its own layers and
tokens. Each method declares that measurement itself
(:meth:`~visgrpo.credit.base.CreditMethod.target_metrics`, in its own file); this module
measures every registered method that declares one on any batch (held-out validation
included): the method being trained with its settings, the others as default instances
(so a DAPO run reports the same quantities as its baseline). Plus the evidence attention
ratio at every layer present in the signals. A new method with a target needs no edit here.
"""

from __future__ import annotations

import math

import torch

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics
from visgrpo.credit.diagnostics import evidence_attention_ratio
from visgrpo.data.signals import SignalRequest, Signals


def layer_evidence_ratios(signals: Signals) -> Metrics:
    """``{"evidence_ratio_L<l>": ratio}`` for every layer of ``signals.image_attention``
    (skipped without an evidence mask; a layer where no response is defined is left out).
    """
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


def methods_with_targets() -> list[str]:
    """Registered credit methods that declare a target (registry order: sorted names)."""
    return [name for name in CREDIT_METHODS.names() if CREDIT_METHODS.get(name).declares_target()]


def target_methods(active: list[CreditMethod], num_layers: int) -> list[CreditMethod]:
    """One instance per method that declares a target (:func:`methods_with_targets`): the
    active one (its own settings) when trained, else a default instance (so every run
    measures every target); depth bound.
    """
    names = methods_with_targets()
    by_name = {m.name: m for m in active if m.name in names}
    out = [by_name.get(name) or CREDIT_METHODS.get(name)() for name in names]
    for m in out:
        m.signal_request(num_layers)
    return out


def target_request(methods: list[CreditMethod], num_layers: int) -> SignalRequest:
    """Detached signals measuring ``methods``' targets, plus image attention at every layer
    (grad layers are asked for as plain image attention: measurements need no graph).
    """
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
    evidence ratios, from detached ``signals``.
    """
    out: Metrics = dict(layer_evidence_ratios(signals))
    for m in methods:
        out.update({f"{m.name}/{k}": v for k, v in (m.target_metrics(signals) or {}).items()})
    return out


__all__ = [
    "layer_evidence_ratios",
    "methods_with_targets",
    "target_methods",
    "target_metrics",
    "target_request",
]
