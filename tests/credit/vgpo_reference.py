"""Plain-loop reference of VGPO's equations (arXiv 2604.09349; docs/methods.md, VGPO).

Written independently of ``visgrpo.credit.vgpo``: Python floats and lists, one token at a
time, following the equations in the order the paper states them. Shared conventions
(documented in visgrpo/credit/vgpo.py): degenerate min-max -> 0, ``u = k / (n - 1)`` over
real tokens (0 for n = 1), gate size ``ceil(kappa * n_candidates)`` with ties by position,
padding keeps the incoming advantage. Used by tests/credit/test_vgpo.py and
experiments/bench/credit_vs_loop_bench.py.
"""

from __future__ import annotations

import math


def _minmax(values: list[float]) -> list[float]:
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi - lo <= 0:
        return [0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (max(na, 1e-8) * max(nb, 1e-8))


def _compensation(u: float, schedule: str, beta: float, power: float, step_start: float) -> float:
    if schedule == "linear":
        return beta * u
    if schedule == "exponential":
        return beta * u**power
    if schedule == "step":
        return beta if u >= step_start else 0.0
    raise ValueError(schedule)


def reference_vgpo(
    advantages,
    hidden,
    image_hidden_mean,
    response_mask,
    group_ids,
    schedule: str = "linear",
    beta: float = 0.3,
    power: float = 2.0,
    step_start: float = 0.5,
    gamma: float = 0.5,
    kappa: float = 0.2,
    psi_range: tuple[float, float] = (0.1, 2.0),
    alpha_range: tuple[float, float] = (0.9, 2.0),
) -> list[list[float]]:
    """VGPO advantages as nested lists [B][T] (inputs: tensors or nested lists)."""
    adv = [list(map(float, row)) for row in _tolist(advantages)]
    M = [[bool(x) for x in row] for row in _tolist(response_mask)]
    w = reference_focus(hidden, image_hidden_mean, M)
    psi, alpha = reference_weights(
        w, M, group_ids, schedule, beta, power, step_start, gamma, kappa, psi_range, alpha_range
    )
    out = [row[:] for row in adv]
    for i in range(len(M)):
        for t, m in enumerate(M[i]):
            if m:
                out[i][t] = adv[i][t] * alpha[i] * psi[i][t]
    return out


def reference_focus(hidden, image_hidden_mean, response_mask) -> list[list[float]]:
    """Visual focus [B][T]: cosine with the mean image hidden state, min-max over the
    batch's real tokens (0 at padding)."""
    H = _tolist(hidden)
    V = _tolist(image_hidden_mean)
    M = [[bool(x) for x in row] for row in _tolist(response_mask)]
    B = len(M)
    real = [[t for t, m in enumerate(row) if m] for row in M]
    raw = {(i, t): _cos(H[i][t], V[i]) for i in range(B) for t in real[i]}
    keys = list(raw)
    normed = dict(zip(keys, _minmax([raw[k] for k in keys]), strict=True))
    return [[normed.get((i, t), 0.0) for t in range(len(M[i]))] for i in range(B)]


def reference_weights(
    focus,
    response_mask,
    group_ids,
    schedule: str = "linear",
    beta: float = 0.3,
    power: float = 2.0,
    step_start: float = 0.5,
    gamma: float = 0.5,
    kappa: float = 0.2,
    psi_range: tuple[float, float] = (0.1, 2.0),
    alpha_range: tuple[float, float] = (0.9, 2.0),
) -> tuple[list[list[float]], list[float]]:
    """Token weights psi [B][T] (1 at padding) and trajectory weights alpha [B] from the
    batch-normalised focus [B][T]."""
    W = _tolist(focus)
    M = [[bool(x) for x in row] for row in _tolist(response_mask)]
    gids = [int(g) for g in _tolist(group_ids)]
    B = len(M)
    real = [[t for t, m in enumerate(row) if m] for row in M]
    psi = [[1.0] * len(M[i]) for i in range(B)]
    phi = [0.0] * B
    for i in range(B):
        pos = real[i]
        n = len(pos)
        w = [W[i][t] for t in pos]
        u = [k / (n - 1) if n > 1 else 0.0 for k in range(n)]
        # Gate: top ceil(kappa * |candidates|) candidates (u >= gamma) by focus.
        cand = [k for k in range(n) if u[k] >= gamma]
        n_gate = math.ceil(kappa * len(cand) - 1e-6) if cand else 0
        ranked = sorted(cand, key=lambda k: (-w[k], k))
        gated = set(ranked[:n_gate])
        w_comp = [
            w[k] * (1.0 + (_compensation(u[k], schedule, beta, power, step_start) if k in gated else 0.0))
            for k in range(n)
        ]
        # Token weight: per-sequence min-max, psi = clamp(1 + w_hat - mean w_hat).
        w_hat = _minmax(w_comp)
        mean_hat = sum(w_hat) / n if n else 0.0
        for k, t in enumerate(pos):
            psi[i][t] = min(max(1.0 + w_hat[k] - mean_hat, psi_range[0]), psi_range[1])
        phi[i] = sum(w_hat)

    # Trajectory weight: phi min-max within each prompt group.
    alpha = [1.0] * B
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(gids):
        groups.setdefault(g, []).append(i)
    for members in groups.values():
        norm = _minmax([phi[i] for i in members])
        mean = sum(norm) / len(norm)
        for i, v in zip(members, norm, strict=True):
            alpha[i] = min(max(1.0 + v - mean, alpha_range[0]), alpha_range[1])
    return psi, alpha


def _tolist(x):
    return x.tolist() if hasattr(x, "tolist") else x
