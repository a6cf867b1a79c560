"""Plain-loop references of VGPO (arXiv 2604.09349; docs/methods.md, VGPO).

Written independently of ``visgrpo.credit.vgpo``: Python floats and lists, one token at a
time.

* :func:`reference_vgpo`: the equations in the order the paper states them, with
  visgrpo's conventions (degenerate min-max -> 0, ``u = k / (n - 1)`` over real tokens,
  padding keeps the incoming advantage) and either gate rounding.
* :func:`authors_vgpo`: a line-by-line transcription of the authors' code
  (``_compute_visual_attention_weights``, ``_compute_visual_compensation_factor``, the
  gated compensation and intra/inter reweighting of ``update_policy`` in
  https://github.com/wzb-bupt/VGPO/blob/HEAD/verl/workers/actor/dp_actor.py;
  ``compute_trajectory_visual_weighting`` in
  https://github.com/wzb-bupt/VGPO/blob/HEAD/verl/trainer/core_algos.py), from the full last hidden states [B][L][D]
  and the prompt length, with switches for the two bugs visgrpo fixes.

Used by tests/credit/test_vgpo.py, tests/credit/test_fidelity.py and
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
    gate_rounding: str = "floor",
) -> list[list[float]]:
    """VGPO advantages as nested lists [B][T] (inputs: tensors or nested lists)."""
    adv = [list(map(float, row)) for row in _tolist(advantages)]
    M = [[bool(x) for x in row] for row in _tolist(response_mask)]
    w = reference_focus(hidden, image_hidden_mean, M)
    psi, alpha = reference_weights(
        w, M, group_ids, schedule, beta, power, step_start, gamma, kappa, psi_range, alpha_range, gate_rounding
    )
    out = [row[:] for row in adv]
    for i in range(len(M)):
        for t, m in enumerate(M[i]):
            if m:
                out[i][t] = adv[i][t] * alpha[i] * psi[i][t]
    return out


def reference_focus(hidden, image_hidden_mean, response_mask) -> list[list[float]]:
    """Visual focus [B][T]: cosine with the mean image hidden state, min-max over the
    batch's real tokens (0 at padding).
    """
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
    gate_rounding: str = "floor",
) -> tuple[list[list[float]], list[float]]:
    """Token weights psi [B][T] (1 at padding) and trajectory weights alpha [B] from the
    batch-normalised focus [B][T].
    """
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
        if gate_rounding == "ceil":
            # Gate: top ceil(kappa * |candidates|) candidates (u >= gamma) by focus.
            cand = [k for k in range(n) if u[k] >= gamma]
            n_gate = math.ceil(kappa * len(cand) - 1e-6) if cand else 0
            ranked = sorted(cand, key=lambda k: (-w[k], k))
            gated = set(ranked[:n_gate])
        else:
            # Gate: candidates from ordinal floor(gamma * n); every candidate at least the
            # max(1, floor(kappa * |candidates|))-th largest focus.
            cand = list(range(int(math.floor(gamma * n)), n))
            gated = set()
            if cand:
                n_gate = max(1, int(math.floor(kappa * len(cand))))
                kth = sorted((w[k] for k in cand), reverse=True)[n_gate - 1]
                gated = {k for k in cand if w[k] >= kth}
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


def _cos_torch(a: list[float], b: list[float], eps: float = 1e-8) -> float:
    # F.cosine_similarity: a.b / sqrt(max(|a|^2 |b|^2, eps^2)).
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na2 = sum(x * x for x in a)
    nb2 = sum(y * y for y in b)
    return dot / math.sqrt(max(na2 * nb2, eps * eps))


def authors_vgpo(
    advantages,
    last_hidden,
    image_positions,
    prompt_length: int,
    response_mask,
    group_ids=None,
    rollout_n: int = 8,
    strength: float = 0.3,
    modulation_type: str = "linear",
    exponent: float = 2.0,
    step_ratio: float = 0.5,
    gated_start_ratio: float = 0.5,
    visual_threshold: float = 0.2,
    exclude_padding: bool = True,
    true_groups: bool = True,
) -> list[list[float]]:
    """The authors' VGPO advantages [B][T], one row and one token at a time.

    Args:
        advantages: [B][T] incoming token advantages.
        last_hidden: [B][L][D] last-layer hidden states, L = prompt_length + T.
        image_positions: per sample, the positions of its image tokens.
        prompt_length: P; response token t sits at ``gen_pos = P + t`` (their code).
        response_mask: [B][T].
        group_ids: [B] prompt groups (used when ``true_groups``).
        rollout_n: their group size (consecutive rows; the whole batch when B < n).
        strength, modulation_type, exponent, step_ratio: compensation (start ratio 0).
        gated_start_ratio, visual_threshold: gamma and kappa of the gate.
        exclude_padding: False reproduces their padding-free path, where padded response
            positions have zero hidden states (cosine 0) and enter the batch min-max.
        true_groups: False reproduces their consecutive-row groups.
    """
    H = _tolist(last_hidden)
    A = [list(map(float, row)) for row in _tolist(advantages)]
    M = [[bool(x) for x in row] for row in _tolist(response_mask)]
    B, T = len(M), len(M[0])
    eps = 1e-8

    # _compute_visual_attention_weights: cosine at gen_pos = prompt_length + gen_idx.
    weights = []
    for b in range(B):
        vis = [H[b][p] for p in image_positions[b]]
        D = len(H[b][0])
        vmean = [sum(v[d] for v in vis) / len(vis) for d in range(D)]
        row = []
        for gen_idx in range(T):
            gen_pos = prompt_length + gen_idx
            if not M[b][gen_idx] and not exclude_padding:
                row.append(0.0)  # padding-free path: padded hidden states are zeros
                continue
            row.append(_cos_torch(H[b][gen_pos], vmean))
        weights.append(row)
    valid = [[True] * T for _ in range(B)] if not exclude_padding else M
    vals = [weights[b][t] for b in range(B) for t in range(T) if valid[b][t]]
    gmin, gmax = min(vals), max(vals)
    grange = gmax - gmin + eps
    weights = [[(weights[b][t] - gmin) / grange if valid[b][t] else 0.0 for t in range(T)] for b in range(B)]

    # intra_weights[~response_mask] = 0
    intra = [[weights[b][t] if M[b][t] else 0.0 for t in range(T)] for b in range(B)]

    # _compensation_factor (start_ratio = 0.0)
    comp = [[0.0] * T for _ in range(B)]
    for b in range(B):
        pos = [t for t in range(T) if M[b][t]]
        if not pos:
            continue
        lo, hi = min(pos), max(pos)
        rng = hi - lo + eps
        for t in pos:
            u = (t - lo) / rng
            if modulation_type == "linear":
                comp[b][t] = strength * ((u - 0.0) / (1.0 - 0.0 + eps))
            elif modulation_type == "exponential":
                m = min(max((u - 0.0) / (1.0 - 0.0 + eps), 0.0), 1.0)
                comp[b][t] = strength * m**exponent
            else:  # step-function
                comp[b][t] = strength if u >= step_ratio else 0.0

    # Gated compensation (Eq. 6)
    gating = [[0.0] * T for _ in range(B)]
    for b in range(B):
        pos = [t for t in range(T) if M[b][t]]
        vw = [intra[b][t] for t in pos]
        num_valid = len(vw)
        start_idx = int(num_valid * gated_start_ratio)
        if num_valid and start_idx < num_valid:
            range_w = vw[start_idx:]
            num_top_k = max(1, int(len(range_w) * visual_threshold))
            thr = sorted(range_w, reverse=True)[num_top_k - 1]
            for t, w in zip(pos[start_idx:], range_w, strict=True):
                gating[b][t] = 1.0 if w >= thr else 0.0
    intra = [[intra[b][t] * (1.0 + gating[b][t] * comp[b][t]) for t in range(T)] for b in range(B)]

    # Per-sequence min-max (Eq. 7)
    for b in range(B):
        pos = [t for t in range(T) if M[b][t]]
        if pos:
            vw = [intra[b][t] for t in pos]
            wmin, wmax = min(vw), max(vw)
            for t in pos:
                intra[b][t] = (intra[b][t] - wmin) / (wmax - wmin + eps)
        for t in range(T):
            if not M[b][t]:
                intra[b][t] = 0.0

    # psi (Eq. 8)
    psi = [[1.0] * T for _ in range(B)]
    for b in range(B):
        pos = [t for t in range(T) if M[b][t]]
        if pos:
            avg = sum(intra[b][t] for t in pos) / len(pos)
            for t in pos:
                psi[b][t] = min(max(1.0 + (intra[b][t] - avg), 0.1), 2.0)

    # compute_trajectory_visual_weighting (Eq. 9-11)
    scores = [sum(intra[b][t] for t in range(T) if M[b][t]) for b in range(B)]
    if true_groups:
        gids = [int(g) for g in _tolist(group_ids)]
        groups = [[i for i in range(B) if gids[i] == g] for g in dict.fromkeys(gids)]
    elif rollout_n > 1 and rollout_n <= B:
        groups = [list(range(s, s + rollout_n)) for s in range(0, (B // rollout_n) * rollout_n, rollout_n)]
    else:
        groups = [list(range(B))]
    alpha = [1.0] * B
    for members in groups:
        gs = [scores[i] for i in members]
        smin, smax = min(gs), max(gs)
        norm = [(x - smin) / (smax - smin + eps) for x in gs]
        avg = sum(norm) / len(norm)
        for i, x in zip(members, norm, strict=True):
            alpha[i] = min(max(1.0 + (x - avg), 0.9), 2.0)
    return [[A[b][t] * alpha[b] * psi[b][t] for t in range(T)] for b in range(B)]


def _tolist(x):
    return x.tolist() if hasattr(x, "tolist") else x
