"""Plain-loop reference of VPPO (arXiv 2510.09285; docs/methods.md, VPPO).

Written independently of ``visgrpo.credit.vppo``: Python floats and lists, one token at a
time, transcribing ``update_policy`` of the authors' actor
(https://github.com/huaixuheqing/VPPO-RL/blob/HEAD/verl/workers/actor/dp_actor.py):
the mini-batch pre-pass (sensitivity scores, 0% / 100% quantiles), then per micro-batch
the perception top-p mask (``k = ceil(n * top_p)``, descending sort), the advantage
scaling with the micro-batch mean ``mu_norm`` and ``target_max``, and the entropy penalty
``-masked_mean(log_probs)``. Used by tests/credit/test_vppo.py.
"""

from __future__ import annotations

import math


def _k3(aug: float, old: float) -> float:
    d = min(max(aug - old, -20.0), 20.0)
    return min(max(math.exp(d) - d - 1.0, 0.0), 10.0)


def authors_vppo(adv, old, aug, mask, micro, top_p=0.4, target_min=0.9):
    """Effective per-token advantages (``A * scaling * loss_token_mask``) of one mini-batch.

    Args:
        adv: [B] sequence advantages; old, aug: [B][T] log-probs; mask: [B][T] 0/1.
        micro: list of lists of row indices (the micro-batches, in order).
    Returns:
        [B][T] floats.
    """
    B, T = len(old), len(old[0])
    kl = [[_k3(aug[b][t], old[b][t]) for t in range(T)] for b in range(B)]
    n = [sum(mask[b]) for b in range(B)]
    scores = [sum(kl[b][t] * mask[b][t] for t in range(T)) / max(n[b], 1) for b in range(B)]
    valid = [scores[b] for b in range(B) if n[b] > 0]
    gmin = gmax = None
    if len(valid) > 1:
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
            k = math.ceil(n[b] * top_p)
            order = sorted((t for t in range(T) if mask[b][t]), key=lambda t: -kl[b][t])
            keep = set(order[:k])
            for t in range(T):
                if mask[b][t] and t in keep:
                    out[b][t] = adv[b] * scaling[b]
    return out


def authors_entropy_penalty(logp, mask, coef=0.06):
    """``coef * masked_mean(-log_probs)`` over the tokens of the batch."""
    num = sum(-lp * m for row, mrow in zip(logp, mask, strict=True) for lp, m in zip(row, mrow, strict=True))
    return coef * num / sum(sum(r) for r in mask)
