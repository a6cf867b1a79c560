"""VPPO: visually-perceptive policy optimisation (arXiv 2510.09285; docs/methods.md, VPPO).

As the authors' code defines it (``update_policy`` in
https://github.com/huaixuheqing/VPPO-RL/blob/HEAD/verl/workers/actor/dp_actor.py): with ``logp``
the rollout policy's log-probs on the real image and
``logp_m`` those on an image with random 14-px patches blackened (p = 0.5)::

    d_t   = clamp(logp_m_t - logp_t, -20, 20)
    S_t   = clamp(exp(d_t) - d_t - 1, 0, 10)                 token visual dependency (k3)
    keep  = top ceil(0.4 |o|) tokens of each response by S_t  token gradient filtering
    s_i   = sum_t S_t / max(|o_i|, 1)                          trajectory dependency
    n_i   = (s_i - min_j s_j) / (max_j s_j - min_j s_j)        min-max over the batch
    b_max = b_min + (1 - b_min) / (mean_i n_i + 1e-8)          so that mean_i alpha_i = 1
    alpha_i = b_min + n_i (b_max - b_min)                      (b_min = 0.9; 1 if max-min <= 1e-6)
    A_it  <- A_i * alpha_i * keep_it

plus the authors' "entropy penalty" ``c * mean_t(-logp_t)`` (c = 0.06, with grad; it raises
the sampled tokens' log-probs). The filtered tokens' loss terms are zeroed but the loss is
still averaged over ALL response tokens (their ``compute_policy_loss`` multiplies by the
token mask, then ``average_loss`` over ``response_mask``): zeroing the advantage and keeping
the objective's normaliser is the same thing.

Options the authors' code has, off by default as in their scripts: entropy-based token
selection (``use_vppo_on_entropy``: the top ``ceil(0.2 |o|)`` tokens by entropy also keep
their gradient, OR-ed with the perception mask) and their float32 ``ceil(n * top_p)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics, top_fraction_mask
from visgrpo.data.perturb import Perturbation
from visgrpo.data.signals import SignalRequest, Signals


def token_dependency(logp: Tensor, masked_logp: Tensor, response_mask: Tensor) -> Tensor:
    """[B, T] ``S_t = clamp(exp(d) - d - 1, 0, 10)``, ``d = clamp(logp_m - logp, -20, 20)``; 0 at padding."""
    d = (masked_logp - logp).clamp(-20.0, 20.0)  # [B, T]
    return ((d.exp() - d - 1.0).clamp(0.0, 10.0) * response_mask).detach()


def trajectory_dependency(dep: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(s [B] mean dependency per response, valid [B] bool: |o| > 0)``."""
    n = response_mask.sum(-1)  # [B]
    return (dep * response_mask).sum(-1) / n.clamp_min(1), n > 0


def advantage_scale(score: Tensor, valid: Tensor, lo: Tensor, hi: Tensor, mean: Tensor, count: Tensor,
                    beta_min: float) -> tuple[Tensor, Tensor | None]:
    """``(alpha [B], b_max or None)`` from the batch's min ``lo``, max ``hi``, mean ``mean``
    and number ``count`` of valid trajectory dependencies (alpha = 1 when the range is
    degenerate or fewer than two responses are valid, as the authors' code).
    """
    alpha = torch.ones_like(score)
    if int(count) <= 1 or float(hi - lo) <= 1e-6:
        return alpha, None
    norm = ((score - lo) / (hi - lo)).clamp(0.0, 1.0)  # [B]
    mu = ((mean - lo) / (hi - lo)).clamp(0.0, 1.0)  # the batch mean of norm (min/max are the batch's)
    b_max = beta_min + (1.0 - beta_min) / (mu + 1e-8)
    return torch.where(valid, beta_min + norm * (b_max - beta_min), alpha), b_max


_ROUNDING = {"exact": "ceil", "float32": "ceil_float32"}  # k_rounding -> top_fraction_mask's rounding


@CREDIT_METHODS.register("vppo")
class VPPOCredit(CreditMethod):
    """VPPO (arXiv 2510.09285): masked-image dependency filters tokens and scales advantages.

    Args:
        top_frac: fraction of each response's tokens that keep their gradient (0.4).
        beta_min: lower end of the advantage scale (0.9; the authors' ``advantage_scaling_min``).
        entropy_coef: weight of the entropy penalty ``mean(-logp)`` (0.06; 0 = off).
        mask_prob: probability of blackening a patch (0.5).
        patch_size: blackened cell side in pixels (None: the processor's patch, 14 px on
            Qwen2/2.5-VL as the authors' 14).
        token_filtering: keep only the top ``top_frac`` tokens (the authors' ``use_vppo_on_perception``).
        advantage_shaping: scale advantages by ``alpha_i`` (``use_advantage_shaping``).
        entropy_filtering: also keep the top ``entropy_top_frac`` tokens of each response by
            the sampling entropy (``use_vppo_on_entropy``, off in their scripts); with
            ``token_filtering`` a token kept by either keeps its gradient (their OR), alone
            it is the only filter. The entropy is the rollout policy's (theirs: the current
            policy's in each update; equal with one update per rollout batch).
        entropy_top_frac: the authors' ``top_p_entropy_tokens`` (0.2).
        k_rounding: ``"exact"`` (default): ``k = ceil(n * frac)`` without float round-off;
            ``"float32"``: the authors' float32 product, which keeps one more token when
            ``n * frac`` rounds up past an integer (none for n <= 4096 at 0.4 and 0.2,
            166 lengths of 4096 at 0.3; docs/methods.md).
    """

    name = "vppo"

    def __init__(
        self,
        top_frac: float = 0.4,
        beta_min: float = 0.9,
        entropy_coef: float = 0.06,
        mask_prob: float = 0.5,
        patch_size: int | None = None,
        token_filtering: bool = True,
        advantage_shaping: bool = True,
        entropy_filtering: bool = False,
        entropy_top_frac: float = 0.2,
        k_rounding: str = "exact",
    ) -> None:
        super().__init__()
        if not 0.0 < top_frac <= 1.0:
            raise ValueError(f"VPPOCredit: top_frac must be in (0, 1], got {top_frac}")
        if not 0.0 <= beta_min <= 1.0:
            raise ValueError(f"VPPOCredit: beta_min must be in [0, 1], got {beta_min}")
        self.top_frac, self.beta_min, self.entropy_coef = top_frac, beta_min, entropy_coef
        self.mask_prob, self.patch_size = mask_prob, patch_size
        if not 0.0 < entropy_top_frac <= 1.0:
            raise ValueError(f"VPPOCredit: entropy_top_frac must be in (0, 1], got {entropy_top_frac}")
        if k_rounding not in _ROUNDING:
            raise ValueError(f"VPPOCredit: k_rounding must be one of {', '.join(_ROUNDING)}, got {k_rounding!r}")
        self.token_filtering, self.advantage_shaping = token_filtering, advantage_shaping
        self.entropy_filtering, self.entropy_top_frac, self.k_rounding = entropy_filtering, entropy_top_frac, k_rounding
        # One mask per response (the authors mask each row of the repeated batch).
        self.perturbation = Perturbation("patch_blackening", mask_prob, patch_size, per_response=True)

    def request(self) -> SignalRequest:
        return SignalRequest(masked_logp=self.perturbation, entropies=self.entropy_filtering)

    def loss_request(self, num_layers: int) -> SignalRequest:
        return SignalRequest()  # the entropy penalty reads logp, which every forward gives

    def _dependency(self, signals: Signals) -> Tensor:
        signals.require("logp", "masked_logp", method=self.name)
        return token_dependency(signals.logp.detach(), signals.masked_logp, signals.response_mask)  # [B, T]

    @property
    def batch_reductions(self) -> dict[str, str]:
        return {"min": "min", "max": "max", "sum": "sum", "count": "sum"} if self.advantage_shaping else {}

    def batch_statistics(self, signals: Signals) -> dict[str, Tensor]:
        if not self.advantage_shaping:
            return {}
        score, valid = trajectory_dependency(self._dependency(signals), signals.response_mask)
        inf = torch.tensor(float("inf"), device=score.device)
        return {
            "min": torch.where(valid, score, inf).min() if score.numel() else inf,
            "max": torch.where(valid, score, -inf).max() if score.numel() else -inf,
            "sum": (score * valid).sum(),
            "count": valid.sum().to(score.dtype),
        }

    def token_advantages(self, advantages: Tensor, signals: Signals, batch_stats=None) -> tuple[Tensor, Metrics]:
        mask = signals.response_mask.bool()  # [B, T]
        dep = self._dependency(signals)  # [B, T]
        metrics: Metrics = {"dependency": (dep.sum() / mask.sum().clamp_min(1))}
        rounding = _ROUNDING[self.k_rounding]
        keep = None
        if self.token_filtering:
            keep, _ = top_fraction_mask(dep, mask, self.top_frac, rounding=rounding)  # [B, T]
        if self.entropy_filtering:  # the authors' OR of the entropy and perception masks
            signals.require("entropies", method=self.name)
            by_entropy, _ = top_fraction_mask(signals.entropies, mask, self.entropy_top_frac, rounding=rounding)
            metrics["entropy_token_frac"] = by_entropy.sum() / mask.sum().clamp_min(1)
            keep = by_entropy if keep is None else keep | by_entropy
        if keep is not None:
            advantages = advantages * keep
            metrics["token_frac"] = keep.sum() / mask.sum().clamp_min(1)
        if self.advantage_shaping:
            stats = batch_stats if batch_stats is not None else self.batch_statistics(signals)
            score, valid = trajectory_dependency(dep, mask)  # [B]
            mean = stats["sum"] / stats["count"].clamp_min(1)
            alpha, b_max = advantage_scale(score, valid, stats["min"], stats["max"], mean, stats["count"],
                                           self.beta_min)
            advantages = advantages * alpha[:, None]  # [B, T]
            metrics["alpha_mean"] = alpha.mean()
            if b_max is not None:
                metrics["beta_max"] = b_max
        return advantages, metrics

    def auxiliary_normaliser(self, rewards, evidence_target=None, response_mask=None):
        return None if response_mask is None else response_mask.sum()

    def auxiliary_loss(self, signals: Signals, normaliser=None) -> tuple[Tensor | None, Metrics]:
        if not self.entropy_coef:
            return None, {}
        signals.require("logp", method=self.name)
        mask = signals.response_mask
        norm = mask.sum() if normaliser is None else torch.as_tensor(normaliser, device=mask.device)
        ent = (-signals.logp * mask).sum() / norm.to(signals.logp.dtype).clamp_min(1.0)
        return self.entropy_coef * ent, {"entropy_penalty": ent.detach()}


    def target_metrics(self, signals: Signals) -> Metrics:
        """VPPO's target, the visual dependency of the response tokens (:func:`token_dependency`,
        the k3 estimate of KL(pi(.|image) || pi(.|masked image)) at the sampled token): its
        mean over response tokens (``dependency``) and over the top ``top_frac`` tokens VPPO
        keeps (``dependency_top``). Every arm is measured with this one perturbation (PAPO's
        runs too, as DAPO's), so the arms compare on one scale.
        """
        if signals.masked_logp is None or signals.logp is None:
            return {}
        mask = signals.response_mask.bool()  # [B, T]
        if not bool(mask.any()):
            return {}
        dep = token_dependency(signals.logp.detach(), signals.masked_logp, signals.response_mask)  # [B, T]
        keep, _ = top_fraction_mask(dep, mask, self.top_frac, rounding="ceil")  # [B, T]
        return {"dependency": dep[mask].mean(), "dependency_top": (dep * keep).sum() / keep.sum().clamp_min(1)}


__all__ = ["VPPOCredit", "advantage_scale", "token_dependency", "trajectory_dependency"]
