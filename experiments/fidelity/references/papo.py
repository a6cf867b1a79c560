"""Plain-loop reference of PAPO (arXiv 2507.06448; docs/methods.md, PAPO).

Written independently of ``visgrpo.credit.papo``: Python floats, one token at a time,
transcribing the ``aug_log_probs`` branch of ``update_policy`` in the authors' actor
(https://github.com/MikeWangWZHL/PAPO/blob/HEAD/verl/workers/actor/dp_actor.py, with
``RECOMPUTE_AUG_LOG_PROBS = False``) and ``compute_kl(..., "low_var_kl")`` of
https://github.com/MikeWangWZHL/PAPO/blob/HEAD/verl/trainer/core_algos.py, token-mean
averaging (``loss_avg_mode = "token"``); the options of that branch: the token-level KL
mask (``torch.nanquantile`` of each row at ``1 - top_p``, here ``numpy.nanquantile``, both
linear), the KL clipping, and the annealed coefficient with its discount of the entropy
terms (``AnnealingKLController`` of core_algos.py, used before each update by
``_get_kl_prcp_coef`` of ray_trainer.py). Used by tests/credit/test_papo.py.
"""

from __future__ import annotations

import math

import numpy as np


def low_var_kl(log_prob: float, ref_log_prob: float) -> float:
    kl = min(max(ref_log_prob - log_prob, -20.0), 20.0)
    return min(max(math.exp(kl) - kl - 1.0, -10.0), 10.0)


def authors_papo_terms(logp, aug, mask, gamma=0.01, eta_aug=0.03, eta_ori=0.03, clip=None, token_top_p=None,
                       coef=None):
    """``(-coef KL_prcp + d (eta_aug H_aug + eta_ori H_ori), KL_prcp)`` of one batch (floats);
    ``coef`` is the step's (annealed) coefficient, default ``gamma`` (the configured one), and
    ``d = coef / gamma`` when they differ, else 1.
    """
    n = sum(sum(r) for r in mask)
    kl = h_aug = h_ori = 0.0
    for lrow, arow, mrow in zip(logp, aug, mask, strict=True):
        row = [low_var_kl(lp, ap) for lp, ap in zip(lrow, arow, strict=True)]
        if token_top_p is not None:
            valid = [v for v, m in zip(row, mrow, strict=True) if m]
            thresh = float(np.nanquantile(np.array(valid), 1.0 - token_top_p)) if valid else math.nan
            row = [v if v >= thresh else 0.0 for v in row]
        if clip is not None:
            row = [min(max(v, 0.0), clip) for v in row]
        for v, lp, ap, m in zip(row, lrow, arow, mrow, strict=True):
            if m:
                kl += v
                h_aug += -ap
                h_ori += -lp
    kl, h_aug, h_ori = kl / n, h_aug / n, h_ori / n
    coef = gamma if coef is None else coef
    discount = coef / gamma if coef != gamma else 1.0
    return -coef * kl + eta_aug * discount * h_aug + eta_ori * discount * h_ori, kl


class AnnealingKLController:
    """The authors' controller: ``kl_coef`` moves linearly from start to end over ``total_steps``."""

    def __init__(self, start_value: float, end_value: float, total_steps: int):
        self.start_value, self.end_value = start_value, end_value
        self.total_steps = max(1, total_steps)
        self.kl_coef = start_value
        self.current_step = 0

    def update(self, current_kl, n_steps: int) -> None:
        self.current_step += n_steps
        progress = min(self.current_step / self.total_steps, 1.0)
        self.kl_coef = self.start_value + (self.end_value - self.start_value) * progress
