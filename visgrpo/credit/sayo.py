"""SAYO: region-level visual attention reward (arXiv 2602.08241; docs/methods.md, SAYO).

The reward of a response is how much more attention its high-entropy tokens pay to the
evidence region than to the average image token::

    r_attn = tanh(log((a_reg + eps) / (a_img + eps)))          (paper, attention reward)

with ``a_img`` the mean attention over selected rows x all valid image tokens and ``a_reg``
the mean over selected rows x region tokens (union of the evidence boxes). Rows are the
top ``rho`` (30%) of response tokens by entropy of the sampling distribution.

Defaults follow the authors' code
(https://github.com/Cratileo/Sayo/blob/HEAD/train/trainer/grpo_trainer.py and
https://github.com/Cratileo/Sayo/blob/HEAD/train/reward/attn_rewards.py); docs/methods.md
lists every departure with its measured size. Options restoring our earlier choices:

* ``entropy_attention_pairing``: ``"authors"`` pairs the entropy of the distribution that
  generates token t (row ``P + t - 1``) with the attention whose query IS token t
  (position ``P + t``, their decode step that generates t + 1), for t = 0 .. n - 2 (their
  generation never computes the last token's row; a one-token response keeps t = 0);
  ``"same_position"`` takes both at row ``P + t - 1`` for every real token;
* ``selection_rounding``: ``"floor"`` (authors: ``max(1, floor(rho * m))`` of the m
  candidates) or ``"ceil"`` (``ceil(rho * m)``).

Fixed departures (evident bugs in their code, documented): only REAL tokens are ranked
(their top-k runs over the padded completion) and the selection size comes from the real
length (theirs from the batch's padded length, so it depends on the other responses);
region and image tokens come from the processor's real merged grid (dataset
``evidence_mask``), not a fixed 28-px grid and unpadded prompt indices. Head averaging
happens in the probe: the mean over heads of the per-head means equals the mean of the
head-mean map, so the value is the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics, top_fraction_mask
from visgrpo.data.groups import dense_group_index
from visgrpo.data.signals import SignalRequest, Signals

PAIRINGS = ("authors", "same_position")
ROUNDINGS = ("floor", "ceil")


def sayo_candidates(response_mask: Tensor, pairing: str = "authors") -> Tensor:
    """[B, T] bool tokens whose (entropy, attention) pair can be selected.

    ``"authors"``: real tokens except the last one of each response (one-token responses
    keep their token); ``"same_position"``: every real token.
    """
    mask = response_mask.bool()
    if pairing == "same_position":
        return mask
    if pairing != "authors":
        raise ValueError(f"unknown SAYO pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
    n = mask.sum(-1, keepdim=True)  # [B, 1]
    ordinal = mask.long().cumsum(-1) - 1  # [B, T]
    return mask & ((ordinal < n - 1) | (n == 1))


def sayo_attention_reward(
    attn: Tensor,
    image_mask: Tensor,
    region_mask: Tensor,
    entropies: Tensor,
    response_mask: Tensor,
    rho: float = 0.3,
    eps: float = 1e-8,
    pairing: str = "authors",
    rounding: str = "floor",
) -> tuple[Tensor, Metrics]:
    """SAYO's region attention reward per response.

    Args:
        attn: [B, T, N] attention on image tokens (head mean, one layer) of the query at
            token t's own position ``P + t`` (``pairing="authors"``) or at the row
            ``P + t - 1`` (``"same_position"``).
        image_mask: [B, N] bool, valid image tokens.
        region_mask: [B, N] bool, evidence-region tokens (union of boxes).
        entropies: [B, T] token entropies of the sampling distribution.
        response_mask: [B, T] bool, real response tokens.
        rho: fraction of the candidates selected by entropy (paper: 0.3; 0.2-0.4 best).
        eps: the paper's 1e-8 inside the log ratio.
        pairing: candidate tokens, :func:`sayo_candidates`.
        rounding: selection size, ``"floor"`` or ``"ceil"`` (:func:`top_fraction_mask`).

    Returns:
        ``(r_attn [B], metrics)``. Responses with no region token, no image token or no real
        token get ``r = 0`` (counted in ``metrics["no_region"]``).
    """
    image_mask = image_mask.bool()
    region = region_mask.bool() & image_mask  # [B, N]
    resp = response_mask.bool()  # [B, T]
    attn = attn.detach().float()  # [B, T, N]
    cand = sayo_candidates(resp, pairing)  # [B, T]
    selected, k = top_fraction_mask(entropies.float(), cand, rho, rounding)  # [B, T], [B]
    row_sum_img = (attn * image_mask[:, None, :]).sum(-1)  # [B, T]
    row_sum_reg = (attn * region[:, None, :]).sum(-1)  # [B, T]
    sel = selected.float()  # [B, T]
    n_img = image_mask.sum(-1).float()  # [B]
    n_reg = region.sum(-1).float()  # [B]
    kf = k.float()  # [B]
    a_img = (row_sum_img * sel).sum(-1) / (kf * n_img).clamp_min(1.0)  # [B]
    a_reg = (row_sum_reg * sel).sum(-1) / (kf * n_reg).clamp_min(1.0)  # [B]
    valid = (n_reg > 0) & (k > 0) & (n_img > 0)  # [B]
    r = torch.tanh(torch.log((a_reg + eps) / (a_img + eps)))  # [B]
    r = torch.where(valid, r, torch.zeros_like(r))  # [B]
    vf = valid.float()
    denom = vf.sum().clamp_min(1.0)
    metrics: Metrics = {
        "reward": (r * vf).sum() / denom,
        "a_img": (a_img * vf).sum() / denom,
        "a_reg": (a_reg * vf).sum() / denom,
        "selected_tokens": kf.mean(),
        "no_region": float((~valid).sum()),
    }
    return r, metrics


def within_group_std(x: Tensor, group_ids: Tensor) -> Tensor:
    """Mean over groups of the population std of ``x`` [B] within each group (0-dim).

    The spread a group-normalised advantage sees: an extra reward equal for every response
    of a group cancels in ``R - mean(R)`` whatever its value.
    """
    inv, G = dense_group_index(group_ids)  # [B] compact group index
    x = x.float()
    count = torch.bincount(inv, minlength=G).float()  # [G]
    mean = x.new_zeros(G).scatter_add(0, inv, x) / count  # [G]
    var = x.new_zeros(G).scatter_add(0, inv, (x - mean[inv]) ** 2) / count  # [G]
    return var.sqrt().mean() if G else x.new_zeros(())


def region_mask_from(signals: Signals, threshold: float = 0.0) -> Tensor:
    """[B, N] bool evidence-region tokens: ``evidence_mask > threshold`` if present, else
    ``region_labels > 0``.

    Raises:
        ValueError: neither field is present.
    """
    if signals.evidence_mask is not None:
        return signals.evidence_mask > threshold
    if signals.region_labels is not None:
        return signals.region_labels > 0
    raise ValueError("SAYO needs Signals.evidence_mask or Signals.region_labels (both None)")


@CREDIT_METHODS.register("sayo")
class SAYOCredit(CreditMethod):
    """SAYO (arXiv 2602.08241): region attention reward added to the outcome reward.

    Args:
        rho: fraction of each response's real tokens, ranked by entropy, whose attention
            rows enter the reward (paper 0.3).
        layer: decoder layer(s) of the attention (paper: the last; several are averaged).
        reward_weight: multiplier of ``r_attn`` before it is added to the outcome reward
            (paper 1.0: total reward = r_attn + format (+ accuracy)).
        region_threshold: a token is a region token when its evidence coverage exceeds
            this (0.0 = any overlap with a box, like the authors' box-to-grid rounding).
        eps: constant inside the log ratio (paper 1e-8).
        entropy_attention_pairing: ``"authors"`` (their code: entropy of the distribution
            generating token t with the attention whose query is token t, position
            ``P + t``) or ``"same_position"`` (both at row ``P + t - 1``).
        selection_rounding: ``"floor"`` (their code: ``max(1, floor(rho * m))`` tokens) or
            ``"ceil"`` (``ceil(rho * m)``).
    """

    name = "sayo"

    def __init__(
        self,
        rho: float = 0.3,
        layer: int | str = "last",
        reward_weight: float = 1.0,
        region_threshold: float = 0.0,
        eps: float = 1e-8,
        entropy_attention_pairing: str = "authors",
        selection_rounding: str = "floor",
    ) -> None:
        super().__init__()
        if not 0.0 < rho <= 1.0:
            raise ValueError(f"SAYOCredit: rho must be in (0, 1], got {rho}")
        if entropy_attention_pairing not in PAIRINGS:
            raise ValueError(
                f"SAYOCredit: unknown entropy_attention_pairing {entropy_attention_pairing!r}; "
                f"valid: {', '.join(PAIRINGS)}"
            )
        if selection_rounding not in ROUNDINGS:
            raise ValueError(
                f"SAYOCredit: unknown selection_rounding {selection_rounding!r}; valid: {', '.join(ROUNDINGS)}"
            )
        self.entropy_attention_pairing = entropy_attention_pairing
        self.selection_rounding = selection_rounding
        self.rho = rho
        self.layer = layer
        self.reward_weight = reward_weight
        self.region_threshold = region_threshold
        self.eps = eps

    def request(self) -> SignalRequest:
        layers = frozenset(self.resolve(self.layer))
        if self.entropy_attention_pairing == "authors":
            return SignalRequest(own_attention_layers=layers, entropies=True)
        return SignalRequest(image_attention_layers=layers, entropies=True)

    def extra_rewards(self, signals: Signals) -> tuple[Tensor, Metrics]:
        signals.require("entropies", method=self.name)
        own = self.entropy_attention_pairing == "authors"
        attn = signals.mean_image_attention(self.resolve(self.layer), own=own)  # [B, T, N]
        r, metrics = sayo_attention_reward(
            attn,
            signals.image_mask,
            region_mask_from(signals, self.region_threshold),
            signals.entropies,
            signals.response_mask,
            rho=self.rho,
            eps=self.eps,
            pairing=self.entropy_attention_pairing,
            rounding=self.selection_rounding,
        )
        if signals.group_ids is not None:
            metrics["group_spread"] = within_group_std(r, signals.group_ids)  # before the weight
        return self.reward_weight * r, metrics

    def target_metrics(self, signals: Signals) -> Metrics:
        """SAYO's target on its selected tokens (its layer, entropy selection and pairing):
        the bonus ``reward`` (``r_attn``) and the region-to-image attention ratio
        ``region_ratio`` (``a_reg / a_img``, batch means of numerator and denominator).
        """
        if signals.entropies is None or (signals.evidence_mask is None and signals.region_labels is None):
            return {}
        own = self.entropy_attention_pairing == "authors"
        attn = signals.mean_image_attention(self.resolve(self.layer), own=own)  # [B, T, N]
        _, m = sayo_attention_reward(attn, signals.image_mask, region_mask_from(signals, self.region_threshold),
                                     signals.entropies, signals.response_mask, rho=self.rho, eps=self.eps,
                                     pairing=self.entropy_attention_pairing, rounding=self.selection_rounding)
        out: Metrics = {"reward": m["reward"]}
        if float(m["a_img"]) > 0:
            out["region_ratio"] = m["a_reg"] / m["a_img"]
        return out


__all__ = ["SAYOCredit", "region_mask_from", "sayo_attention_reward", "sayo_candidates", "within_group_std"]
