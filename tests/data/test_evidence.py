"""EASE's evidence target (visgrpo.data.evidence): the smoothed box target q and its
Gaussian cell bumps, against hand-derived values and a midpoint-rule integration.
"""

from __future__ import annotations

import math

import pytest
import torch

from visgrpo.data.evidence import gaussian_cell_bumps, smoothed_evidence_target


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_target_hand_value_on_a_1x2_grid():
    # Box = token 0 exactly: centre (0.5, 0.5), sigma = 0.25 per axis. The cell mean of the
    # bump is s sqrt(2 pi) P(cell) with P(token 0) = Phi(2) - Phi(-2) and P(token 1) =
    # Phi(6) - Phi(2) along x (the y factor, the same for both tokens, cancels):
    # q = 0.9 * [P0, P1] / (P0 + P1) + 0.1 / 2.
    q = smoothed_evidence_target(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), (1, 2))
    p0, p1 = _phi(2) - _phi(-2), _phi(6) - _phi(2)
    assert q.tolist() == pytest.approx([0.9 * p0 / (p0 + p1) + 0.05, 0.9 * p1 / (p0 + p1) + 0.05], abs=1e-12)


def test_cell_mean_against_integration_tails_and_thin_boxes():
    # independent reference: midpoint-rule mean of exp(-(x - c)^2 / 2s^2) over each cell
    box = torch.tensor([[[1.0, 0.5, 4.0, 2.5]]])  # [1, 1, 4]: centre (2.5, 1.5), sigma (0.75, 0.5)
    ours = gaussian_cell_bumps(box, (4, 6))[0]  # [4, 6]
    t = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    gx = torch.stack([torch.exp(-0.5 * ((j + t - 2.5) / 0.75) ** 2).mean() for j in range(6)])
    gy = torch.stack([torch.exp(-0.5 * ((i + t - 1.5) / 0.5) ** 2).mean() for i in range(4)])
    assert torch.allclose(ours, gy[:, None] * gx[None, :], rtol=1e-6, atol=1e-12)
    # far upper tail: a box at the left edge mirrored to the right edge gives the mirrored
    # bumps, down to 1e-250 in the last cell (z = 34..38; Phi(zb) - Phi(za) by ndtr would
    # round every cell beyond z ~ 8.3 to 0 on the right-hand side only)
    left = gaussian_cell_bumps(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), (1, 10)).reshape(-1)
    right = gaussian_cell_bumps(torch.tensor([[9.0, 0.0, 10.0, 1.0]]), (1, 10)).reshape(-1)
    assert bool((left > 0).all()) and torch.allclose(left, right.flip(0), rtol=1e-9, atol=0)
    # a box thinner than a token: its bump's total mass does not depend on where it sits
    thin = torch.tensor([[[2.1, 2.1, 2.2, 2.2]], [[2.45, 2.45, 2.55, 2.55]], [[2.85, 2.0, 2.95, 2.1]]],
                        dtype=torch.float64)  # [3, 1, 4]: sides 0.1, sigma 0.025
    mass = gaussian_cell_bumps(thin, (6, 6)).sum((-1, -2))  # [3]
    assert torch.allclose(mass, torch.full((3,), 2 * math.pi * 0.025**2, dtype=torch.float64), rtol=1e-9)


def test_target_sums_to_one_and_peaks_in_the_box():
    # 6 x 8 grid, boxes (x0, y0, x1, y1) in token units; the first is centred at (3, 2),
    # so its four nearest token centres (rows 1-2, cols 2-3) share the maximum.
    boxes = torch.tensor([[2.0, 1.0, 4.0, 3.0], [6.0, 4.0, 8.0, 6.0]])
    q = smoothed_evidence_target(boxes, (6, 8))
    assert q.shape == (48,) and float(q.sum()) == pytest.approx(1.0, abs=1e-12)
    grid = q.reshape(6, 8)
    top = grid.flatten().argsort(descending=True)[:8].tolist()
    cells = {(i // 8, i % 8) for i in top}
    assert cells == {(1, 2), (1, 3), (2, 2), (2, 3), (4, 6), (4, 7), (5, 6), (5, 7)}
    assert float(q.min()) >= 0.1 / 48  # uniform floor alpha / N
    # No box: uniform; a degenerate (zero-size) box still gives a finite distribution.
    uniform = torch.full((6,), 1 / 6, dtype=torch.float64)
    assert torch.allclose(smoothed_evidence_target(torch.zeros(0, 4), (2, 3)), uniform)
    q0 = smoothed_evidence_target(torch.tensor([[1.2, 0.7, 1.2, 0.7]]), (2, 3))
    assert torch.isfinite(q0).all() and int(q0.argmax()) == 1  # nearest centre: row 0, col 1
    with pytest.raises(ValueError, match="x1 >= x0"):
        smoothed_evidence_target(torch.tensor([[3.0, 0.0, 1.0, 1.0]]), (2, 3))
