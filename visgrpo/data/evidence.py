"""The EASE evidence target: evidence boxes as a smoothed distribution over visual tokens.

EASE (arXiv 2605.30912; docs/methods.md, "EASE") pulls the policy's attention toward::

    q = (1 - alpha) * normalise(sum_boxes gaussian_box) + alpha * uniform     (alpha = 0.1)

with ``sigma = sigma_scale x box side`` per axis in token units (floored at 1e-6). How the
bump is discretised on the token grid is not on the public record; ours (a choice) AVERAGES
each peak-1 bump over each token cell (difference of normal CDFs) rather than sampling it at
token centres: a box's total mass then does not depend on where it sits inside a cell, a
thin box still puts its mass in the cell of its centre, and for sigma of several tokens the
two agree.

The formula lives in the data layer because two sides compute it: ``visgrpo-data masks``
writes it as the dataset's ``evidence_target`` column, and :mod:`visgrpo.credit.ease` uses
it; both import it from here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _cell_means(lo: Tensor, hi: Tensor, n: int, sigma_scale: float) -> Tensor:
    """[..., K, n]: mean over each unit cell ``[j, j+1]`` of the peak-1 Gaussian of each
    interval ``[lo, hi]`` (centre ``(lo+hi)/2``, sigma ``sigma_scale * (hi-lo)``, >= 1e-6).

    ``s sqrt(2 pi) P(j < X < j+1)``, X ~ N(c, s^2), in tail-accurate form: with ``u >= v``
    the cell's standardised edges reflected to the centre's left (``u = -za, v = -zb`` right
    of the centre), ``P = Phi(u) - Phi(v) = Phi(u) (1 - exp(log Phi(v) - log Phi(u)))``
    from ``log_ndtr`` (``ndtr`` itself rounds tails below ~1e-17 to 0).
    """
    c = ((lo + hi) / 2)[..., None]  # [..., K, 1]
    s = (sigma_scale * (hi - lo)).clamp_min(1e-6)[..., None]  # [..., K, 1]
    e = torch.arange(n + 1, dtype=torch.float64, device=lo.device)  # [n+1] cell edges
    za, zb = (e[:-1] - c) / s, (e[1:] - c) / s  # [..., K, n]
    right = za > 0
    lu = torch.special.log_ndtr(torch.where(right, -za, zb))  # [..., K, n]
    lv = torch.special.log_ndtr(torch.where(right, -zb, za))  # [..., K, n], lv <= lu
    p = torch.exp(lu) * -torch.expm1(lv - lu)  # [..., K, n]
    return s * (2 * torch.pi) ** 0.5 * p


def gaussian_cell_bumps(boxes_in_token_units: Tensor, grid_hw: tuple[int, int], sigma_scale: float = 0.25) -> Tensor:
    """Sum over boxes of peak-1 Gaussian bumps, each averaged over every token cell.

    Args:
        boxes_in_token_units: [..., K, 4] ``(x0, y0, x1, y1)`` in token units (any leading
            batch dims; ``data_tools.masks`` calls this on [S, K, 4]).
        grid_hw: ``(gh, gw)``.
        sigma_scale: sigma / box side, per axis (0.25).

    Returns:
        [..., gh, gw] float64, non-negative (unnormalised).
    """
    b = torch.as_tensor(boxes_in_token_units, dtype=torch.float64)  # [..., K, 4]
    gx = _cell_means(b[..., 0], b[..., 2], int(grid_hw[1]), sigma_scale)  # [..., K, gw]
    gy = _cell_means(b[..., 1], b[..., 3], int(grid_hw[0]), sigma_scale)  # [..., K, gh]
    return torch.einsum("...ki,...kj->...ij", gy, gx)  # [..., gh, gw]


def smoothed_evidence_target(
    boxes_in_token_units: Tensor,
    grid_hw: tuple[int, int],
    sigma_scale: float = 0.25,
    alpha: float = 0.1,
) -> Tensor:
    """EASE target over one image's merged token grid, row-major [gh * gw], sums to 1.

    The same distribution as the ``evidence_target`` column ``visgrpo-data masks`` writes
    (data_tools/masks.py computes its bumps with :func:`gaussian_cell_bumps`; a test checks
    equality), so the column and this function are interchangeable for single-image samples.

    Args:
        boxes_in_token_units: [K, 4] boxes ``(x0, y0, x1, y1)`` in token units of the merged
            grid (resized-image pixels / (patch * merge)); K = 0 gives the uniform target.
        grid_hw: ``(gh, gw)`` merged tokens per column / row.
        sigma_scale: Gaussian sigma as a fraction of the box side, per axis (0.25).
        alpha: weight of the uniform background (0.1).

    Returns:
        [gh * gw] float64: ``(1 - alpha) * normalise(sum_k g_k) + alpha / (gh * gw)``, with
        ``g_k`` the peak-1 Gaussian of box k averaged over each token cell; uniform when no
        box puts mass on the grid.
    """
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    if gh < 1 or gw < 1:
        raise ValueError(f"smoothed_evidence_target: grid_hw must be positive, got {grid_hw}")
    boxes = torch.as_tensor(boxes_in_token_units, dtype=torch.float64).reshape(-1, 4)  # [K, 4]
    uniform = torch.full((gh * gw,), 1.0 / (gh * gw), dtype=torch.float64)
    if boxes.shape[0] == 0:
        return uniform
    if not bool(torch.isfinite(boxes).all()) or bool((boxes[:, 2:] < boxes[:, :2]).any()):
        raise ValueError(f"smoothed_evidence_target: boxes must be finite with x1 >= x0, y1 >= y0: {boxes.tolist()}")
    bump = gaussian_cell_bumps(boxes, (gh, gw), sigma_scale).reshape(-1)  # [gh*gw]
    mass = bump.sum()
    if not bool(mass > 0):
        return uniform
    return (1 - alpha) * bump / mass + alpha * uniform
