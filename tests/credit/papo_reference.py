"""Plain-loop reference of PAPO (arXiv 2507.06448; docs/methods.md, PAPO).

Written independently of ``visgrpo.credit.papo``: Python floats, one token at a time,
transcribing the ``aug_log_probs`` branch of ``update_policy`` in the authors' actor
(https://github.com/MikeWangWZHL/PAPO/blob/HEAD/verl/workers/actor/dp_actor.py, with
``RECOMPUTE_AUG_LOG_PROBS = False``) and ``compute_kl(..., "low_var_kl")`` of
https://github.com/MikeWangWZHL/PAPO/blob/HEAD/verl/trainer/core_algos.py, token-mean
averaging (``loss_avg_mode = "token"``). Used by tests/credit/test_papo.py.
"""

from __future__ import annotations

import math


def low_var_kl(log_prob: float, ref_log_prob: float) -> float:
    kl = min(max(ref_log_prob - log_prob, -20.0), 20.0)
    return min(max(math.exp(kl) - kl - 1.0, -10.0), 10.0)


def authors_papo_terms(logp, aug, mask, gamma=0.01, eta_aug=0.03, eta_ori=0.03):
    """``(-gamma KL_prcp + eta_aug H_aug + eta_ori H_ori, KL_prcp)`` of one batch (floats)."""
    n = sum(sum(r) for r in mask)
    kl = h_aug = h_ori = 0.0
    for lrow, arow, mrow in zip(logp, aug, mask, strict=True):
        for lp, ap, m in zip(lrow, arow, mrow, strict=True):
            if m:
                kl += low_var_kl(lp, ap)
                h_aug += -ap
                h_ori += -lp
    kl, h_aug, h_ori = kl / n, h_aug / n, h_ori / n
    return -gamma * kl + eta_aug * h_aug + eta_ori * h_ori, kl
