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

(gamma 0.01, eta 0.03 in their DAPO scripts; gamma 0.02 in their GRPO scripts, eta 0.05 in
the 7b ones, none in the 3b one). Since ``logp_m`` carries no grad, ``H_aug`` only shifts
the loss value (as in their default). Their options, off by default as theirs: recomputing
``logp_m`` with grad, KL clipping, a per-token KL mask and an annealed ``gamma``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics
from visgrpo.data.perturb import Perturbation
from visgrpo.data.signals import SignalRequest, Signals


def perception_kl(logp: Tensor, masked_logp: Tensor) -> Tensor:
    """[B, T] ``clamp(exp(c) - c - 1, -10, 10)``, ``c = clamp(logp_m - logp, -20, 20)``."""
    c = (masked_logp - logp).clamp(-20.0, 20.0)  # [B, T]
    return (c.exp() - c - 1.0).clamp(-10.0, 10.0)


def kl_token_mask(kl: Tensor, response_mask: Tensor, top_frac: float) -> Tensor:
    """[B, T] bool: the tokens whose ``kl`` reaches the per-row ``1 - top_frac`` quantile of
    the row's response tokens (``torch.nanquantile``, linear interpolation), as the authors'
    ``use_kl_prcp_token_level_mask`` (https://github.com/MikeWangWZHL/PAPO/blob/fb63bf4/verl/workers/actor/dp_actor.py#L341-L350).
    """
    mask = response_mask.bool()
    thresh = torch.nanquantile(kl.detach().masked_fill(~mask, float("nan")), 1.0 - top_frac, dim=1, keepdim=True)
    return kl.detach() >= thresh  # [B, T]; rows without tokens: NaN threshold, nothing kept


def papo_loss(
    logp: Tensor, masked_logp: Tensor, response_mask: Tensor, gamma: float, eta_aug: float, eta_ori: float,
    normaliser: float | Tensor | None = None, kl_clip: float | None = None, token_top_frac: float | None = None,
    entropy_scale: float = 1.0,
) -> tuple[Tensor, Metrics]:
    """``-gamma KL_prcp + entropy_scale (eta_aug H_aug + eta_ori H_ori)`` as token sums over
    ``normaliser`` (the number of response tokens of the mini-batch; default: of this one).

    Args:
        logp: [B, T] current log-probs WITH autograd.
        masked_logp: [B, T] log-probs on the masked image (constants, or with autograd when
            they are recomputed by the current policy).
        response_mask: [B, T] bool.
        gamma, eta_aug, eta_ori: the weights (``gamma`` at this step when annealed).
        normaliser: token count of the mini-batch.
        kl_clip: clamp the per-token KL to ``[0, kl_clip]`` (their ``use_kl_prcp_clipping``).
        token_top_frac: keep the KL of the top fraction of each response's tokens only
            (their ``use_kl_prcp_token_level_mask``), before the clip as theirs.
        entropy_scale: the annealing discount of the entropy terms (``gamma_t / gamma``).
    """
    m = response_mask.to(logp.dtype)  # [B, T]
    norm = m.sum() if normaliser is None else torch.as_tensor(normaliser, device=logp.device)
    norm = norm.to(logp.dtype).clamp_min(1.0)
    kl_tok = perception_kl(logp, masked_logp)  # [B, T]
    if token_top_frac is not None:
        kl_tok = kl_tok * kl_token_mask(kl_tok, response_mask, token_top_frac).to(kl_tok.dtype)
    if kl_clip is not None:
        kl_tok = kl_tok.clamp(0.0, kl_clip)
    kl = (kl_tok * m).sum() / norm
    h_aug = (-masked_logp * m).sum() / norm
    h_ori = (-logp * m).sum() / norm
    loss = -gamma * kl + entropy_scale * (eta_aug * h_aug + eta_ori * h_ori)
    return loss, {"kl_prcp": kl.detach(), "aug_entropy": h_aug.detach(), "ori_entropy": h_ori.detach()}


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
        recompute_masked_logp: recompute the masked-image log-probs in every loss forward
            with the current policy and WITH grad (their ``RECOMPUTE_AUG_LOG_PROBS``, off by
            default: then they are the rollout policy's, computed once, no grad).
        kl_clip: clamp the per-token ``KL_prcp`` to ``[0, kl_clip]`` (``use_kl_prcp_clipping``
            with ``kl_prcp_clipping``, their value 0.2; None = off, their default).
        kl_token_top_frac: keep ``KL_prcp`` on each response's top fraction of tokens only
            (``use_kl_prcp_token_level_mask`` with ``kl_prcp_token_level_mask_top_p``, their
            value 0.2; None = off, their default).
        schedule: ``"fixed"`` (default) or ``"annealing"`` (``kl_prcp_schedule``): ``gamma``
            moves linearly from ``anneal_start`` to ``anneal_end`` over ``anneal_steps``
            rollout batches, and the entropy terms are scaled by ``gamma_t / gamma``.
        anneal_start: start value (None: ``gamma``, their default).
        anneal_end: end value (0.0, their default).
        anneal_steps: rollout batches to anneal over (theirs: ``int(training_steps *
            annealing_ratio)``, ratio 0.5); required with ``schedule="annealing"``.
    """

    name = "papo"

    def __init__(
        self,
        gamma: float = 0.01,
        eta_aug: float = 0.03,
        eta_ori: float = 0.03,
        mask_prob: float = 0.6,
        patch_size: int | None = None,
        recompute_masked_logp: bool = False,
        kl_clip: float | None = None,
        kl_token_top_frac: float | None = None,
        schedule: str = "fixed",
        anneal_start: float | None = None,
        anneal_end: float = 0.0,
        anneal_steps: int | None = None,
    ) -> None:
        super().__init__()
        if kl_clip is not None and not kl_clip > 0:
            raise ValueError(f"PAPOCredit: kl_clip must be > 0 or None, got {kl_clip}")
        if kl_token_top_frac is not None and not 0.0 < kl_token_top_frac < 1.0:
            raise ValueError(f"PAPOCredit: kl_token_top_frac must be in (0, 1) or None, got {kl_token_top_frac}")
        if schedule not in ("fixed", "annealing"):
            raise ValueError(f"PAPOCredit: schedule must be 'fixed' or 'annealing', got {schedule!r}")
        if schedule == "annealing" and (anneal_steps is None or anneal_steps < 1):
            raise ValueError(f"PAPOCredit: schedule 'annealing' needs anneal_steps >= 1 (rollout batches), "
                             f"got {anneal_steps}")
        self.gamma, self.eta_aug, self.eta_ori = gamma, eta_aug, eta_ori
        self.mask_prob, self.patch_size = mask_prob, patch_size
        self.recompute_masked_logp, self.kl_clip = recompute_masked_logp, kl_clip
        self.kl_token_top_frac = kl_token_top_frac
        self.schedule, self.anneal_start, self.anneal_end, self.anneal_steps = (
            schedule, anneal_start, anneal_end, anneal_steps)
        self._rollout_batches = 0
        # One mask per prompt, shared by its G responses (the authors mask before repeating).
        self.perturbation = Perturbation("patch_blackening", mask_prob, patch_size, per_response=False,
                                         with_grad=recompute_masked_logp)

    def set_progress(self, rollout_batches: int) -> None:
        self._rollout_batches = int(rollout_batches)

    def current_gamma(self) -> float:
        """``gamma`` at this rollout batch: the authors' ``AnnealingKLController`` value before
        its update (https://github.com/MikeWangWZHL/PAPO/blob/fb63bf4/verl/trainer/core_algos.py#L75-L90,
        https://github.com/MikeWangWZHL/PAPO/blob/fb63bf4/verl/trainer/ray_trainer.py#L576-L580).
        """
        if self.schedule == "fixed":
            return self.gamma
        start = self.gamma if self.anneal_start is None else self.anneal_start
        progress = min(self._rollout_batches / max(1, self.anneal_steps), 1.0)
        return start + (self.anneal_end - start) * progress

    def request(self) -> SignalRequest:
        return SignalRequest(masked_logp=self.perturbation)

    def loss_request(self, num_layers: int) -> SignalRequest:
        # By default every update reuses the rollout policy's logp_m (the training module keeps
        # them from its rollout-policy pass); recomputed, each loss forward runs the masked forward.
        return SignalRequest(masked_logp=self.perturbation if self.recompute_masked_logp else None)

    def auxiliary_normaliser(self, rewards, evidence_target=None, response_mask=None):
        return None if response_mask is None else response_mask.sum()

    def auxiliary_loss(self, signals: Signals, normaliser=None) -> tuple[Tensor, Metrics]:
        signals.require("logp", "masked_logp", method=self.name)
        gamma = self.current_gamma()
        # Their discount of the entropy terms when the coefficient moved (their dp_actor.py, lines 364-366).
        scale = gamma / self.gamma if gamma != self.gamma else 1.0
        masked = signals.masked_logp if self.recompute_masked_logp else signals.masked_logp.detach()
        loss, metrics = papo_loss(signals.logp, masked, signals.response_mask, gamma, self.eta_aug, self.eta_ori,
                                  normaliser, self.kl_clip, self.kl_token_top_frac, scale)
        metrics["loss"] = loss.detach()
        if self.schedule != "fixed":
            metrics["gamma"] = gamma
        return loss, metrics


__all__ = ["PAPOCredit", "kl_token_mask", "papo_loss", "perception_kl"]
