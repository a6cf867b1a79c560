"""VGPO: visually-guided policy optimisation (arXiv 2604.09349; docs/methods.md, VGPO).

Per-token advantages follow the hidden-state "visual focus" of each token:

1. focus ``w[i,t] = cos(h[i,t], mean_{v in I} h[i,v])`` (last layer, detached), min-max
   normalised over the valid tokens of the batch;
2. compensation over the normalised position ``u`` (linear ``beta*u``, exponential
   ``beta*u^p``, step ``beta*[u >= s]``) for the gated tokens: ``G = 1`` for the top
   ``kappa`` of the late candidates by ``w``; ``w' = w * (1 + G*C)``;
3. token weight ``psi = clamp(1 + w_hat - mean_t w_hat, 0.1, 2.0)`` with ``w_hat`` the
   per-sequence min-max of ``w'``;
4. trajectory weight ``alpha = clamp(1 + phi_norm - mean_g phi_norm, 0.9, 2.0)`` with
   ``phi_i = sum_t w_hat[i,t]`` min-max normalised within the prompt group;
5. ``A[i,t] = A_i * alpha_i * psi[i,t]``.

Defaults follow the authors' code
(https://github.com/wzb-bupt/VGPO/blob/HEAD/verl/workers/actor/dp_actor.py);
docs/methods.md lists every departure with its measured size. Options restoring our
earlier choices:

* ``hidden_position``: ``"own"`` (authors: ``h[i,t]`` at token t's own position
  ``P + t``) or ``"predicting"`` (the row ``P + t - 1`` that predicts t);
* ``gate_rounding``: ``"floor"`` (authors: candidates are the real tokens from ordinal
  ``floor(gamma * n)`` on, ``max(1, floor(kappa * n_candidates))`` of them gated, every
  candidate tied with the last one included) or ``"ceil"`` (candidates ``u >= gamma``,
  ``ceil(kappa * n_candidates)`` gated, ties by position).

Fixed departures (evident bugs in their code, documented): the batch min-max counts only
real tokens (theirs counts padded positions as cosine 0); groups are the true prompt
groups (theirs: consecutive rows of a shuffled micro-batch, or the whole micro-batch when
it holds fewer rows than a group). Conventions: a degenerate min-max (``max == min``)
gives 0 (theirs divides by ``range + 1e-8``: the same 0, and 1e-8 relative otherwise);
``u = t / (n - 1)`` over the real tokens (0 for a one-token response); padding keeps the
incoming advantage; exponential power ``p = 2`` and step start ``s = 0.5`` as theirs.

Everything is vectorised: no Python loop over tokens, responses or groups.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics, top_fraction_mask
from visgrpo.credit.diagnostics import binned_slope, visual_mass_by_position
from visgrpo.data.groups import dense_group_index
from visgrpo.data.signals import SignalRequest, Signals

SCHEDULES = ("linear", "exponential", "step")
GATE_ROUNDINGS = ("floor", "ceil")
HIDDEN_POSITIONS = ("own", "predicting")


def masked_minmax(
    x: Tensor, mask: Tensor, dim: int | None = None, value_range: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """Min-max normalise ``x`` over the ``mask``-ed entries (over all, or along ``dim``).

    ``value_range``: the ``(min, max)`` to use instead of those of ``x`` (a range taken over
    a larger batch). Entries outside the mask are 0; a degenerate range (max == min, or no
    entry) gives 0.
    """
    mask = mask.bool()
    big = torch.finfo(x.dtype).max
    if value_range is not None:
        lo, hi = (v.to(x) for v in value_range)
    elif dim is None:
        lo = x.masked_fill(~mask, big).amin()
        hi = x.masked_fill(~mask, -big).amax()
    else:
        lo = x.masked_fill(~mask, big).amin(dim, keepdim=True)
        hi = x.masked_fill(~mask, -big).amax(dim, keepdim=True)
    span = hi - lo
    ok = span > 0
    out = torch.where(ok, (x - lo) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(x))
    return out.masked_fill(~mask, 0.0)


def focus_cosine(hidden: Tensor, image_hidden_mean: Tensor) -> Tensor:
    """[B, T] cosine of each token's hidden state with its sample's mean image hidden state
    (detached): the visual focus before the batch min-max.
    """
    h = hidden.detach()  # [B, T, D]
    v = image_hidden_mean.detach().to(h.dtype)  # [B, D]
    # cos = h.v / (max(|h|, eps) max(|v|, eps)), as F.cosine_similarity, without the
    # [B, T, D] broadcast of v (about 7x faster on CPU).
    v_unit = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # [B, D]
    return torch.einsum("btd,bd->bt", h, v_unit) / h.norm(dim=-1).clamp_min(1e-8)  # [B, T]


def visual_focus(
    hidden: Tensor, image_hidden_mean: Tensor, response_mask: Tensor, focus_range: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """``w`` [B, T]: :func:`focus_cosine` min-max normalised over the valid tokens of the
    batch (Eq. focus); ``focus_range`` is the batch's ``(min, max)`` when these rows are
    only part of it (a micro-batch).
    """
    return masked_minmax(focus_cosine(hidden, image_hidden_mean), response_mask, value_range=focus_range)


def normalised_position(response_mask: Tensor) -> Tensor:
    """``u`` [B, T] in [0, 1]: ordinal of each real token / (n - 1); 0 at padding and for
    one-token responses.
    """
    mask = response_mask.bool()
    ordinal = mask.long().cumsum(-1) - 1  # [B, T]
    n = mask.sum(-1, keepdim=True)  # [B, 1]
    u = ordinal.double() / (n - 1).clamp_min(1).double()  # [B, T]
    return u.masked_fill(~mask, 0.0)


def compensation(
    u: Tensor, schedule: str = "linear", beta: float = 0.3, power: float = 2.0, step_start: float = 0.5
) -> Tensor:
    """Compensation ``C(u)`` [B, T]: linear ``beta*u``, exponential ``beta*u**power``,
    step ``beta*[u >= step_start]``.
    """
    if schedule == "linear":
        return beta * u
    if schedule == "exponential":
        return beta * u.pow(power)
    if schedule == "step":
        return beta * (u >= step_start).to(u.dtype)
    raise ValueError(f"unknown VGPO schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def focus_gate(
    w: Tensor, u: Tensor, response_mask: Tensor, gamma: float = 0.5, kappa: float = 0.2, rounding: str = "floor"
) -> Tensor:
    """``G`` [B, T] bool: the top ``kappa`` of each response's late candidates by ``w``.

    ``rounding="floor"`` (authors): candidates are the real tokens with ordinal
    ``>= floor(gamma * n)``; the gate keeps the candidates whose ``w`` is at least the
    ``max(1, floor(kappa * n_candidates))``-th largest (ties all kept).
    ``rounding="ceil"``: candidates ``u >= gamma``; ``ceil(kappa * n_candidates)`` of them
    (ties by position).
    """
    mask = response_mask.bool()
    if rounding == "ceil":
        gate, _ = top_fraction_mask(w, mask & (u >= gamma), kappa)
        return gate
    if rounding != "floor":
        raise ValueError(f"unknown VGPO gate_rounding {rounding!r}; valid: {', '.join(GATE_ROUNDINGS)}")
    ordinal = mask.long().cumsum(-1) - 1  # [B, T]
    start = torch.floor(mask.sum(-1, keepdim=True).double() * gamma).long()  # [B, 1]
    candidates = mask & (ordinal >= start)  # [B, T]
    n_c = candidates.sum(-1, keepdim=True)  # [B, 1]
    k = torch.floor(n_c.double() * kappa).long().clamp_min(1)  # [B, 1]
    ranked = w.masked_fill(~candidates, -math.inf).sort(-1, descending=True).values  # [B, T]
    threshold = ranked.gather(-1, (k - 1).clamp_max(w.shape[-1] - 1))  # [B, 1]
    return candidates & (w >= threshold) & (n_c > 0)


def group_minmax(x: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Min-max of ``x`` [B] within each group (degenerate group -> 0) and the group mean of
    the result, broadcast back to [B]. Vectorised with ``scatter_reduce``.
    """
    inv, G = dense_group_index(group_ids)  # [B] compact group index
    lo = x.new_full((G,), float("inf")).scatter_reduce(0, inv, x, "amin")  # [G]
    hi = x.new_full((G,), float("-inf")).scatter_reduce(0, inv, x, "amax")  # [G]
    span = (hi - lo)[inv]  # [B]
    ok = span > 0
    norm = torch.where(ok, (x - lo[inv]) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(x))
    count = torch.bincount(inv, minlength=G).to(x.dtype)  # [G]
    mean = x.new_zeros(G).scatter_add(0, inv, norm) / count  # [G]
    return norm, mean[inv]


def vgpo_weights(
    w: Tensor,
    response_mask: Tensor,
    group_ids: Tensor,
    schedule: str = "linear",
    beta: float = 0.3,
    power: float = 2.0,
    step_start: float = 0.5,
    gamma: float = 0.5,
    kappa: float = 0.2,
    psi_range: tuple[float, float] = (0.1, 2.0),
    alpha_range: tuple[float, float] = (0.9, 2.0),
    gate_rounding: str = "floor",
) -> tuple[Tensor, Tensor, Metrics]:
    """Token weights ``psi`` [B, T] and trajectory weights ``alpha`` [B] from focus ``w``.

    Args:
        w: [B, T] batch-normalised visual focus (:func:`visual_focus`).
        response_mask: [B, T] bool.
        group_ids: [B] prompt group of each response.
        schedule, beta, power, step_start: compensation (:func:`compensation`).
        gamma: gate candidates are the late tokens (ordinal ``>= floor(gamma * n)``, or
            ``u >= gamma`` with ``gate_rounding="ceil"``).
        kappa: fraction of the candidates gated (top by ``w``).
        psi_range: clamp of ``psi`` (paper 0.1, 2.0).
        alpha_range: clamp of ``alpha`` (paper 0.9, 2.0).
        gate_rounding: ``"floor"`` (authors) or ``"ceil"`` (:func:`focus_gate`).

    Returns:
        ``(psi [B, T] (1 at padding), alpha [B], metrics)``.
    """
    mask = response_mask.bool()
    u = normalised_position(mask).to(w.dtype)  # [B, T]
    gate = focus_gate(w, u, mask, gamma, kappa, gate_rounding)  # [B, T]
    comp = compensation(u, schedule, beta, power, step_start)  # [B, T]
    w_comp = w * (1.0 + gate.to(w.dtype) * comp)  # [B, T]
    w_hat = masked_minmax(w_comp, mask, dim=-1)  # [B, T]
    n = mask.sum(-1, keepdim=True).clamp_min(1).to(w.dtype)  # [B, 1]
    mean_hat = w_hat.sum(-1, keepdim=True) / n  # [B, 1]
    psi = (1.0 + w_hat - mean_hat).clamp(*psi_range)  # [B, T]
    psi = torch.where(mask, psi, torch.ones_like(psi))  # [B, T]
    phi = w_hat.sum(-1)  # [B]
    phi_norm, phi_mean = group_minmax(phi, group_ids)  # [B], [B]
    alpha = (1.0 + phi_norm - phi_mean).clamp(*alpha_range)  # [B]
    maskf = mask.to(w.dtype)
    tokens = maskf.sum().clamp_min(1.0)
    metrics: Metrics = {
        "psi_mean": (psi * maskf).sum() / tokens,
        "psi_std": ((psi - (psi * maskf).sum() / tokens) ** 2 * maskf).sum().div(tokens).sqrt(),
        "alpha_mean": alpha.mean(),
        "alpha_max": alpha.max() if alpha.numel() else alpha.new_zeros(()),
        "gated_frac": gate.to(w.dtype).sum() / tokens,
        "focus_mean": (w * maskf).sum() / tokens,
    }
    return psi, alpha, metrics


def vgpo_token_advantages(
    advantages: Tensor,
    hidden: Tensor,
    image_hidden_mean: Tensor,
    response_mask: Tensor,
    group_ids: Tensor,
    focus_range: tuple[Tensor, Tensor] | None = None,
    **kwargs,
) -> tuple[Tensor, Metrics]:
    """``A[i,t] = A[i,t] * alpha_i * psi[i,t]`` (VGPO final advantage).

    Args:
        advantages: [B] or [B, T] incoming advantages.
        hidden: [B, T, D] last-layer hidden states of the response tokens (at their own
            positions ``P + t`` for the authors' convention).
        image_hidden_mean: [B, D] mean last-layer hidden state of the image tokens.
        response_mask: [B, T] bool.
        group_ids: [B].
        focus_range: the batch's ``(min, max)`` of :func:`focus_cosine` over valid tokens,
            when these rows are part of a larger batch (None: the range of these rows).
        **kwargs: hyper-parameters of :func:`vgpo_weights`.

    Returns:
        ``(advantages [B, T], metrics)``; padding keeps the incoming value.
    """
    mask = response_mask.bool()
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand(mask.shape)  # [B, T]
    dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    w = visual_focus(hidden.to(dtype), image_hidden_mean, mask, focus_range)  # [B, T]
    psi, alpha, metrics = vgpo_weights(w, mask, group_ids, **kwargs)
    scale = (alpha[:, None] * psi).to(advantages.dtype)  # [B, T]
    out = torch.where(mask, advantages * scale, advantages)  # [B, T]
    return out, metrics


@CREDIT_METHODS.register("vgpo")
class VGPOCredit(CreditMethod):
    """VGPO (arXiv 2604.09349): hidden-state visual focus reshapes token advantages.

    Args:
        schedule: compensation schedule, ``linear`` (paper default), ``exponential``, ``step``.
        beta: compensation strength (paper 0.3).
        power: exponent ``p`` of the exponential schedule (authors' code: 2.0).
        step_start: position ``s`` where the step schedule switches on (authors' code: 0.5).
        gamma: gate candidates are the late tokens, ordinal ``>= floor(gamma * n)``
            (``u >= gamma`` with ``gate_rounding="ceil"``) (paper 0.5).
        kappa: fraction of candidates gated, top by focus (paper 0.2).
        psi_min: lower clamp of the token weight (paper 0.1).
        psi_max: upper clamp of the token weight (paper 2.0).
        alpha_min: lower clamp of the trajectory weight (paper 0.9).
        alpha_max: upper clamp of the trajectory weight (paper 2.0).
        gate_rounding: ``"floor"`` (authors' code: ``max(1, floor(kappa * n))`` gated from
            ordinal ``floor(gamma * n)`` on) or ``"ceil"`` (see :func:`focus_gate`).
        hidden_position: ``"own"`` (authors' code: the hidden state at token t's own
            position ``P + t``) or ``"predicting"`` (the row ``P + t - 1``).
    """

    name = "vgpo"

    def __init__(
        self,
        schedule: str = "linear",
        beta: float = 0.3,
        power: float = 2.0,
        step_start: float = 0.5,
        gamma: float = 0.5,
        kappa: float = 0.2,
        psi_min: float = 0.1,
        psi_max: float = 2.0,
        alpha_min: float = 0.9,
        alpha_max: float = 2.0,
        gate_rounding: str = "floor",
        hidden_position: str = "own",
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"VGPOCredit: unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        if gate_rounding not in GATE_ROUNDINGS:
            raise ValueError(
                f"VGPOCredit: unknown gate_rounding {gate_rounding!r}; valid: {', '.join(GATE_ROUNDINGS)}"
            )
        if hidden_position not in HIDDEN_POSITIONS:
            raise ValueError(
                f"VGPOCredit: unknown hidden_position {hidden_position!r}; valid: {', '.join(HIDDEN_POSITIONS)}"
            )
        self.gate_rounding, self.hidden_position = gate_rounding, hidden_position
        self.schedule, self.beta, self.power, self.step_start = schedule, beta, power, step_start
        self.gamma, self.kappa = gamma, kappa
        self.psi_min, self.psi_max, self.alpha_min, self.alpha_max = psi_min, psi_max, alpha_min, alpha_max

    def request(self) -> SignalRequest:
        return SignalRequest(hidden_states=True)

    # -- batch scope (interface split; the formulas above are unchanged) ----------------
    # The authors min-max the focus per micro-batch of their actor forward
    # (_forward_micro_batch), so their result depends on the micro-batch size. Here each
    # micro-batch (and rank) reports its min and max over valid tokens; the module combines
    # them over the whole rollout batch (all ranks), so the result does not depend on
    # micro_batch_size (docs/methods.md, VGPO departures).
    @property
    def batch_reductions(self) -> dict[str, str]:
        return {"focus_min": "min", "focus_max": "max"}

    @property
    def _hidden_field(self) -> str:
        return "own_hidden" if self.hidden_position == "own" else "hidden"

    def batch_statistics(self, signals: Signals) -> dict[str, Tensor]:
        signals.require(self._hidden_field, "image_hidden_mean", method=self.name)
        hidden = getattr(signals, self._hidden_field)
        dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        w = focus_cosine(hidden.to(dtype), signals.image_hidden_mean)  # [B, T]
        mask = signals.response_mask.bool()
        big = torch.finfo(w.dtype).max
        return {"focus_min": w.masked_fill(~mask, big).amin(), "focus_max": w.masked_fill(~mask, -big).amax()}

    def token_advantages(
        self, advantages: Tensor, signals: Signals, batch_stats: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, Metrics]:
        field = self._hidden_field
        signals.require(field, "image_hidden_mean", method=self.name)
        focus_range = None if batch_stats is None else (batch_stats["focus_min"], batch_stats["focus_max"])
        return vgpo_token_advantages(
            advantages,
            getattr(signals, field),
            signals.image_hidden_mean,
            signals.response_mask,
            signals.group_ids,
            focus_range=focus_range,
            schedule=self.schedule,
            beta=self.beta,
            power=self.power,
            step_start=self.step_start,
            gamma=self.gamma,
            kappa=self.kappa,
            psi_range=(self.psi_min, self.psi_max),
            alpha_range=(self.alpha_min, self.alpha_max),
            gate_rounding=self.gate_rounding,
        )

    def target_metrics(self, signals: Signals, bins: int = 10) -> Metrics:
        """VGPO's target: the visual focus :func:`focus_cosine` (its hidden position, raw,
        no min-max) binned by relative response position (``focus_pos<k>``, the
        "forgetting curve"), its mean over real tokens and its least-squares slope per unit
        of relative position (``focus_slope``; negative: the focus fades along the response).
        """
        hidden = getattr(signals, self._hidden_field)
        if hidden is None or signals.image_hidden_mean is None:
            return {}
        w = focus_cosine(hidden.float(), signals.image_hidden_mean)  # [B, T]
        curve, counts = visual_mass_by_position(w, signals.response_mask, bins)  # [bins]
        out: Metrics = {f"focus_pos{k:02d}": curve[k] for k in range(bins) if counts[k] > 0}
        resp = signals.response_mask.bool()
        out["focus_mean"] = (w * resp).sum() / resp.sum().clamp_min(1)
        slope = binned_slope(curve)
        if not math.isnan(slope):
            out["focus_slope"] = slope
        return out


__all__ = [
    "VGPOCredit",
    "compensation",
    "focus_cosine",
    "focus_gate",
    "group_minmax",
    "masked_minmax",
    "normalised_position",
    "vgpo_token_advantages",
    "vgpo_weights",
    "visual_focus",
]
