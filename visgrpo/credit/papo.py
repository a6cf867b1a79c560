"""PAPO: perception-aware policy optimisation (arXiv 2507.06448; docs/methods.md, PAPO).

As the authors' code defines it (``update_policy`` in
https://github.com/MikeWangWZHL/PAPO/blob/HEAD/verl/workers/actor/dp_actor.py, with
``RECOMPUTE_AUG_LOG_PROBS = False``, their default): ``logp_m`` are
the rollout policy's log-probs with random 14-px patches of the image blackened (p = 0.6),
computed once per step WITHOUT grad (``compute_log_probs_aug``); with ``logp`` the current
policy's log-probs (with grad) and token means over the response tokens::

    k_t    = clamp(exp(c_t) - c_t - 1, -10, 10),  c_t = clamp(logp_m_t - logp_t, -20, 20)
    KL_prcp = mean_t k_t                                  ("low_var_kl" of KL(pi || pi_m))
    H_aug  = mean_t(-logp_m_t)      H_ori = mean_t(-logp_t)
    L      = L_pg - gamma KL_prcp + eta_aug H_aug + eta_ori H_ori

(gamma 0.01, eta 0.03 in their DAPO scripts; 0.02 and 0.05 in their GRPO scripts). Since
``logp_m`` carries no grad, ``H_aug`` only shifts the loss value (as in their default).
"""

from __future__ import annotations

import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics
from visgrpo.data.perturb import Perturbation
from visgrpo.data.signals import SignalRequest, Signals


def perception_kl(logp: Tensor, masked_logp: Tensor) -> Tensor:
    """[B, T] ``clamp(exp(c) - c - 1, -10, 10)``, ``c = clamp(logp_m - logp, -20, 20)`` (grad via ``logp``)."""
    c = (masked_logp - logp).clamp(-20.0, 20.0)  # [B, T]
    return (c.exp() - c - 1.0).clamp(-10.0, 10.0)


def papo_loss(
    logp: Tensor, masked_logp: Tensor, response_mask: Tensor, gamma: float, eta_aug: float, eta_ori: float,
    normaliser: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """``-gamma KL_prcp + eta_aug H_aug + eta_ori H_ori`` as token sums over ``normaliser``
    (the number of response tokens of the FULL batch; default: of this one).

    Args:
        logp: [B, T] current log-probs WITH autograd.
        masked_logp: [B, T] log-probs on the masked image (constants).
        response_mask: [B, T] bool.
        gamma, eta_aug, eta_ori: the weights.
        normaliser: token count of the full batch.
    """
    m = response_mask.to(logp.dtype)  # [B, T]
    norm = m.sum() if normaliser is None else torch.as_tensor(normaliser, device=logp.device)
    norm = norm.to(logp.dtype).clamp_min(1.0)
    kl = (perception_kl(logp, masked_logp.detach()) * m).sum() / norm
    h_aug = (-masked_logp.detach() * m).sum() / norm
    h_ori = (-logp * m).sum() / norm
    loss = -gamma * kl + eta_aug * h_aug + eta_ori * h_ori
    return loss, {"kl_prcp": kl.detach(), "aug_entropy": h_aug, "ori_entropy": h_ori.detach()}


@CREDIT_METHODS.register("papo")
class PAPOCredit(CreditMethod):
    """PAPO (arXiv 2507.06448): maximise the KL between the real- and masked-image policies.

    Args:
        gamma: weight of ``KL_prcp`` (0.01, the DAPO variant; 0.02 GRPO).
        eta_aug: weight of the masked-image entropy term (0.03; 0.05 GRPO).
        eta_ori: weight of the real-image entropy term (0.03; 0.05 GRPO).
        mask_prob: probability of blackening a patch (0.6).
        patch_size: blackened cell side in pixels (None: the processor's patch, 14 px on
            Qwen2/2.5-VL as the authors' 14).
    """

    name = "papo"

    def __init__(
        self,
        gamma: float = 0.01,
        eta_aug: float = 0.03,
        eta_ori: float = 0.03,
        mask_prob: float = 0.6,
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.gamma, self.eta_aug, self.eta_ori = gamma, eta_aug, eta_ori
        self.mask_prob, self.patch_size = mask_prob, patch_size
        # One mask per prompt, shared by its G responses (the authors mask before repeating).
        self.perturbation = Perturbation("patch_blackening", mask_prob, patch_size, per_response=False)

    def request(self) -> SignalRequest:
        return SignalRequest(masked_logp=self.perturbation)

    def loss_request(self, num_layers: int) -> SignalRequest:
        # The loss needs logp_m in every loss forward (PPO epochs included); no grad.
        return SignalRequest(masked_logp=self.perturbation)

    def auxiliary_normaliser(self, rewards, evidence_target=None, response_mask=None):
        return None if response_mask is None else response_mask.sum()

    def auxiliary_loss(self, signals: Signals, normaliser=None) -> tuple[Tensor, Metrics]:
        signals.require("logp", "masked_logp", method=self.name)
        loss, metrics = papo_loss(signals.logp, signals.masked_logp, signals.response_mask,
                                  self.gamma, self.eta_aug, self.eta_ori, normaliser)
        metrics["loss"] = loss.detach()
        return loss, metrics


__all__ = ["PAPOCredit", "papo_loss", "perception_kl"]
