"""EASE: evidence-anchored spatial attention supervision (arXiv 2605.30912; docs/methods.md, EASE).

Evidence boxes become a smoothed target ``q`` over the visual tokens; the policy's
response-to-image attention ``p`` (one decoder layer, ``floor(2L/3)``, head mean, WITH
autograd) is pulled toward it on high-reward trajectories only::

    q = (1 - alpha) * normalise(sum_boxes gaussian_box) + alpha * uniform     (alpha = 0.1)
    L_attn = KL(p || q) averaged over <= 64 evenly spaced response tokens     (forward)
    L = L_objective + lambda * L_attn                                         (lambda = 1e-3)

Batch mean (our choice, matching the objectives' global normalisers): the per-trajectory
token mean is summed over the gated trajectories (reward >= 0.5, with evidence and image
tokens) and divided by ``normaliser`` = the number of gated trajectories in the FULL batch
(:meth:`EASECredit.auxiliary_normaliser`; default: those of the given batch), so splitting
a batch into micro-batches and summing their losses gives the full-batch loss.

Values are from a second-hand account of the released code (docs/methods.md, EASE): treat them as
defaults. The Gaussian uses ``sigma = sigma_scale x box side`` per axis in token units
(floored at 1e-6). How the bump is discretised on the token grid is not on the public
record; ours (a choice) AVERAGES each peak-1 bump over each token cell (difference of normal
CDFs) rather than sampling it at token centres: a box's total mass then does not depend on
where it sits inside a cell (centre sampling gives a box thinner than a token a weight that
swings by orders of magnitude with a sub-token shift), a thin box still puts its mass in
the cell of its centre, and for sigma of several tokens the two agree. The dataset's
``evidence_target`` column (``visgrpo-data masks``) is this same distribution: both come
from :func:`visgrpo.data.evidence.smoothed_evidence_target`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics
from visgrpo.credit.diagnostics import evidence_attention_ratio
from visgrpo.data.signals import SignalRequest, Signals

DIRECTIONS = ("forward", "reverse")


def evenly_spaced_tokens(response_mask: Tensor, max_tokens: int = 64) -> Tensor:
    """[B, T] bool: all real tokens of a response with ``n <= max_tokens``, else
    ``max_tokens`` evenly spaced ones (ordinals ``floor(j (n-1) / (max_tokens-1))``: first
    and last included, distinct). Vectorised.
    """
    mask = response_mask.bool()
    B, T = mask.shape
    M = max(1, min(int(max_tokens), T))
    n = mask.sum(-1, keepdim=True)  # [B, 1]
    j = torch.arange(M, device=mask.device)[None, :]  # [1, M]
    spaced = (j * (n - 1)) // max(M - 1, 1)  # [B, M]
    ordinal = torch.where(n > M, spaced, j)  # [B, M]
    valid = j < n.clamp_max(M)  # [B, M]
    real_first = torch.sort((~mask).to(torch.int8), dim=-1, stable=True).indices  # [B, T]
    cols = real_first.gather(1, ordinal.clamp_max(T - 1))  # [B, M] column of each ordinal
    sel = torch.zeros(B, T, dtype=torch.bool, device=mask.device)
    return sel.scatter_(1, cols, valid) & mask


def ease_attention_loss(
    attn: Tensor,
    image_mask: Tensor,
    evidence_target: Tensor,
    response_mask: Tensor,
    rewards: Tensor,
    reward_threshold: float = 0.5,
    max_tokens: int = 64,
    direction: str = "forward",
    eps: float = 1e-8,
    normaliser: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """Reward-gated KL between the policy's image attention and the evidence target.

    Args:
        attn: [B, T, N] response-to-image attention WITH autograd (head mean, one layer).
        image_mask: [B, N] bool.
        evidence_target: [B, N] target (renormalised over valid image tokens here).
        response_mask: [B, T] bool.
        rewards: [B]; trajectories with ``reward >= reward_threshold`` are supervised.
        reward_threshold: the gate (0.5).
        max_tokens: supervised tokens per trajectory, evenly spaced (64).
        direction: ``forward`` = KL(p || q) (paper), ``reverse`` = KL(q || p).
        eps: inside the logs and the renormalisation.
        normaliser: number of gated trajectories in the full batch (default: here).

    Returns:
        ``(loss scalar, metrics)``; a zero that is still connected to ``attn``'s graph when
        nothing is gated.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown EASE direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    img = image_mask.bool()  # [B, N]
    B, T, N = attn.shape
    sel = evenly_spaced_tokens(response_mask, max_tokens)  # [B, T]
    M = max(1, min(int(max_tokens), T))
    cols = torch.sort((~sel).to(torch.int8), dim=-1, stable=True).indices[:, :M]  # [B, M] selected first
    row_ok = sel.gather(1, cols)  # [B, M]
    rows = attn.gather(1, cols[:, :, None].expand(B, M, N))  # [B, M, N] (grad flows)
    rows = rows * img[:, None, :]
    p = rows / (rows.sum(-1, keepdim=True) + eps)  # [B, M, N] over image tokens
    q = evidence_target.to(p.dtype) * img  # [B, N]
    q_mass = q.sum(-1, keepdim=True)  # [B, 1]
    q = (q / q_mass.clamp_min(eps))[:, None, :]  # [B, 1, N]
    if direction == "forward":
        kl = (p * (torch.log(p + eps) - torch.log(q + eps)) * img[:, None, :]).sum(-1)  # [B, M]
    else:
        kl = (q * (torch.log(q + eps) - torch.log(p + eps)) * img[:, None, :]).sum(-1)  # [B, M]
    n_sel = row_ok.sum(-1)  # [B]
    kl_traj = (kl * row_ok).sum(-1) / n_sel.clamp_min(1)  # [B]
    has_evidence = (q_mass.squeeze(-1) > 0) & img.any(-1)  # [B]
    gate = (rewards.to(p.device) >= reward_threshold) & has_evidence & (n_sel > 0)  # [B]
    norm = gate.sum() if normaliser is None else torch.as_tensor(normaliser, device=p.device)
    norm = norm.to(p.dtype).clamp_min(1.0)
    loss = (kl_traj * gate).sum() / norm
    detached = kl_traj.detach()
    gf = gate.to(detached.dtype)
    metrics: Metrics = {
        "kl": (detached * gf).sum() / gf.sum().clamp_min(1.0),
        "gated": gf.sum(),
        "gated_frac": gf.mean() if B else gf.sum(),
        "no_evidence": float((~has_evidence).sum()),
        "tokens_per_traj": n_sel.float().mean(),
    }
    return loss, metrics


@CREDIT_METHODS.register("ease")
class EASECredit(CreditMethod):
    """EASE (arXiv 2605.30912): reward-gated attention KL to the evidence target.

    Args:
        lambda_attn: weight of ``L_attn`` in the total loss (1e-3).
        layer: decoder layer of the supervised attention (``floor(2L/3)``).
        reward_threshold: trajectories with reward >= this are supervised (0.5).
        max_tokens: evenly spaced supervised tokens per trajectory (64).
        direction: ``forward`` KL(p || q) (paper) or ``reverse`` KL(q || p).
        eps: inside the logs.

    The target ``q`` is the dataset's ``evidence_target`` column, built once by
    ``visgrpo-data masks --sigma-scale 0.25 --background-alpha 0.1`` (the paper's sigma and
    uniform mixing) with :func:`smoothed_evidence_target`'s formula; those two settings
    belong to the data stage, not to this loss.
    """

    name = "ease"

    def __init__(
        self,
        lambda_attn: float = 1e-3,
        layer: int | str = "two_thirds",
        reward_threshold: float = 0.5,
        max_tokens: int = 64,
        direction: str = "forward",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"EASECredit: unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
        if max_tokens < 1:
            raise ValueError(f"EASECredit: max_tokens must be >= 1, got {max_tokens}")
        self.lambda_attn, self.layer = lambda_attn, layer
        self.reward_threshold, self.max_tokens, self.direction = reward_threshold, max_tokens, direction
        self.eps = eps
        self._warned_no_gate = False

    def request(self) -> SignalRequest:
        return SignalRequest(grad_attention_layers=frozenset(self.resolve(self.layer)))

    def _warn_if_gate_empty(self, rewards: Tensor, passed: Tensor) -> None:
        """Warn (once per instance) when no response reaches ``reward_threshold``: EASE is
        then silently off for the batch (e.g. a random-weight start, where it never acts).
        """
        if self._warned_no_gate or bool(passed.any()) or rewards.numel() == 0:
            return
        self._warned_no_gate = True
        warnings.warn(
            f"EASE: no response reached reward_threshold={self.reward_threshold} (best reward "
            f"{float(rewards.max()):.3g}), so its attention loss is 0 for this batch; it acts only on "
            "responses with reward >= reward_threshold (lower it, or start from a policy that solves "
            "some prompts). Warned once.",
            UserWarning,
            stacklevel=3,
        )

    def target_metrics(self, signals: Signals) -> Metrics:
        """EASE's target at its layer: the ungated KL(p || q) of :func:`ease_attention_loss`
        (every response with evidence counts, not only the high-reward ones; ``kl``) and the
        evidence attention ratio (``evidence_ratio``); ``layer`` is the layer index.
        """
        layers = self.resolve(self.layer)
        attn = signals.mean_image_attention(layers).detach()  # [B, T, N]
        out: Metrics = {"layer": float(layers[0])}
        if signals.evidence_target is not None:
            ones = torch.ones(attn.shape[0], device=attn.device)  # every response passes the gate
            _, m = ease_attention_loss(attn, signals.image_mask, signals.evidence_target, signals.response_mask, ones,
                                       reward_threshold=0.5, max_tokens=self.max_tokens, direction=self.direction,
                                       eps=self.eps)
            if m["gated"] > 0:
                out["kl"] = m["kl"]
        if signals.evidence_mask is not None:
            _, m = evidence_attention_ratio(attn, signals.image_mask, signals.evidence_mask, signals.response_mask)
            if not math.isnan(float(m["evidence_ratio"])):
                out["evidence_ratio"] = m["evidence_ratio"]
        return out

    def auxiliary_normaliser(
        self, rewards: Tensor, evidence_target: Tensor | None = None, response_mask: Tensor | None = None
    ) -> Tensor:
        """Number of trajectories of the FULL batch that pass the gate (and have evidence)."""
        gate = rewards >= self.reward_threshold  # [B]
        self._warn_if_gate_empty(rewards, gate)
        if evidence_target is not None:
            gate = gate & (evidence_target.to(gate.device).sum(-1) > 0)
        return gate.sum()

    def auxiliary_loss(self, signals: Signals, normaliser=None) -> tuple[Tensor, Metrics]:
        if signals.evidence_target is None:
            raise ValueError(
                "EASE needs Signals.evidence_target (the dataset's evidence_target column from "
                "`visgrpo-data masks`, or smoothed_evidence_target(boxes, grid))"
            )
        attn = signals.mean_image_attention(self.resolve(self.layer))  # [B, T, N]
        loss, metrics = ease_attention_loss(
            attn,
            signals.image_mask,
            signals.evidence_target,
            signals.response_mask,
            signals.rewards,
            reward_threshold=self.reward_threshold,
            max_tokens=self.max_tokens,
            direction=self.direction,
            eps=self.eps,
            normaliser=normaliser,
        )
        metrics["loss"] = loss.detach()
        return self.lambda_attn * loss, metrics


__all__ = [
    "EASECredit",
    "ease_attention_loss",
    "evenly_spaced_tokens",
]
