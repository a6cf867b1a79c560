"""Plain-loop reference of VPPO (arXiv 2510.09285; docs/methods.md, VPPO).

Written independently of ``visgrpo.credit.vppo``: Python floats and lists, one token at a
time, transcribing ``update_policy`` of the authors' actor
(https://github.com/huaixuheqing/VPPO-RL/blob/HEAD/verl/workers/actor/dp_actor.py):
the mini-batch pre-pass (sensitivity scores, 0% / 100% quantiles), then per micro-batch
the perception top-p mask (``k = ceil(n * top_p)``, descending sort), the advantage
scaling with the micro-batch mean ``mu_norm`` and ``target_max``, and the entropy penalty
``-masked_mean(log_probs)``; with ``entropy`` the entropy top-p mask of
``use_vppo_on_entropy`` (lines 325-353 of dp_actor.py at a23c54b), OR-ed with the perception
mask (#L428-L429). ``k`` is their float32 product (``response_mask.sum(1) * top_p``: a long
tensor times a Python float), transcribed with numpy float32. Used by
tests/credit/test_vppo.py.
"""

from __future__ import annotations

import math

import numpy as np


def _k3(aug: float, old: float) -> float:
    d = min(max(aug - old, -20.0), 20.0)
    return min(max(math.exp(d) - d - 1.0, 0.0), 10.0)


def _k(n: int, top_p: float) -> int:
    """``torch.ceil(num_valid_tokens * top_p).int()`` with a long ``num_valid_tokens``: float32."""
    return int(math.ceil(float(np.float32(n) * np.float32(top_p))))


def _top(scores, mask_row, k):
    order = sorted((t for t in range(len(scores)) if mask_row[t]), key=lambda t: -scores[t])
    return set(order[:k])


def authors_vppo(adv, old, aug, mask, micro, top_p=0.4, target_min=0.9, entropy=None, top_p_entropy=0.2,
                 perception=True):
    """Effective per-token advantages (``A * scaling * loss_token_mask``) of one mini-batch.

    Args:
        adv: [B] sequence advantages; old, aug: [B][T] log-probs; mask: [B][T] 0/1.
        micro: list of lists of row indices (the micro-batches, in order).
        entropy: [B][T] token entropies (``use_vppo_on_entropy``), or None (off).
        perception: ``use_vppo_on_perception`` (the perception top-p mask).

    Returns:
        [B][T] floats.
    """
    B, T = len(old), len(old[0])
    kl = [[_k3(aug[b][t], old[b][t]) for t in range(T)] for b in range(B)]
    n = [sum(mask[b]) for b in range(B)]
    scores = [sum(kl[b][t] * mask[b][t] for t in range(T)) / max(n[b], 1) for b in range(B)]
    valid = [scores[b] for b in range(B) if n[b] > 0]
    gmin = gmax = None
    if perception and len(valid) > 1:  # their pre-pass runs with use_vppo_on_perception only
        gmin, gmax = min(valid), max(valid)
    out = [[0.0] * T for _ in range(B)]
    for rows in micro:
        scaling = {b: 1.0 for b in rows}
        if gmin is not None and gmax - gmin > 1e-6:
            vrows = [b for b in rows if n[b] > 0]
            normed = {b: min(max((scores[b] - gmin) / (gmax - gmin), 0.0), 1.0) for b in vrows}
            mu = sum(normed.values()) / len(normed)
            tmax = target_min + (1.0 - target_min) / (mu + 1e-8)
            for b in vrows:
                scaling[b] = target_min + normed[b] * (tmax - target_min)
        for b in rows:
            keep = _top(kl[b], mask[b], _k(n[b], top_p)) if perception else set(range(T))
            if entropy is not None:
                by_entropy = _top(entropy[b], mask[b], _k(n[b], top_p_entropy))
                keep = (keep | by_entropy) if perception else by_entropy
            for t in range(T):
                if mask[b][t] and t in keep:
                    out[b][t] = adv[b] * scaling[b]
    return out


def authors_entropy_penalty(logp, mask, coef=0.06):
    """``coef * masked_mean(-log_probs)`` over the tokens of the batch."""
    num = sum(-lp * m for row, mrow in zip(logp, mask, strict=True) for lp, m in zip(row, mrow, strict=True))
    return coef * num / sum(sum(r) for r in mask)
