"""EASE (arXiv 2605.30912): smoothed target, KL values, gate, gradients, micro-batching."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from visgrpo.credit import EASECredit
from visgrpo.credit.ease import ease_attention_loss, evenly_spaced_tokens
from visgrpo.data.evidence import gaussian_cell_bumps, smoothed_evidence_target
from visgrpo.data.signals import Signals


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
    assert torch.allclose(smoothed_evidence_target(torch.zeros(0, 4), (2, 3)),
                          torch.full((6,), 1 / 6, dtype=torch.float64))
    q0 = smoothed_evidence_target(torch.tensor([[1.2, 0.7, 1.2, 0.7]]), (2, 3))
    assert torch.isfinite(q0).all() and int(q0.argmax()) == 1  # nearest centre: row 0, col 1
    with pytest.raises(ValueError, match="x1 >= x0"):
        smoothed_evidence_target(torch.tensor([[3.0, 0.0, 1.0, 1.0]]), (2, 3))


def test_evenly_spaced_selection():
    mask = torch.zeros(3, 200, dtype=torch.bool)
    mask[0, :200] = True
    mask[1, :7] = True
    mask[2, :10] = True
    sel = evenly_spaced_tokens(mask, max_tokens=3)
    # n = 200: ordinals floor(j * 199 / 2) = 0, 99, 199; n = 7: 0, 3, 6; n = 10: 0, 4, 9.
    assert sel[0].nonzero().squeeze(-1).tolist() == [0, 99, 199]
    assert sel[1].nonzero().squeeze(-1).tolist() == [0, 3, 6]
    assert sel[2].nonzero().squeeze(-1).tolist() == [0, 4, 9]
    sel64 = evenly_spaced_tokens(mask, max_tokens=64)
    assert sel64.sum(-1).tolist() == [64, 7, 10]  # short responses: all real tokens
    assert not (sel64 & ~mask).any()


def _kl_setup(p_row, q, rewards=(1.0,)):
    attn = torch.tensor([[p_row]], requires_grad=True)  # [1, 1, N]
    return (attn, torch.ones(1, len(q), dtype=torch.bool), torch.tensor([q]), torch.ones(1, 1, dtype=torch.bool),
            torch.tensor(rewards))


def test_kl_hand_values_both_directions():
    # p = [0.5, 0.5] (from unnormalised [0.2, 0.2]), q = [0.25, 0.75]:
    # KL(p||q) = 0.5 ln 2 + 0.5 ln(2/3) = 0.143841; KL(q||p) = 0.25 ln 0.5 + 0.75 ln 1.5 = 0.130812.
    args = _kl_setup([0.2, 0.2], [0.25, 0.75])
    fwd, _ = ease_attention_loss(*args)
    rev, _ = ease_attention_loss(*args, direction="reverse")
    assert fwd.item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)
    assert rev.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-6)
    with pytest.raises(ValueError, match="forward, reverse"):
        ease_attention_loss(*args, direction="sideways")


def test_kl_is_zero_when_attention_equals_target():
    q = smoothed_evidence_target(torch.tensor([[1.0, 1.0, 3.0, 2.0]]), (3, 4)).float()
    attn = (0.6 * q).repeat(2, 5, 1).requires_grad_(True)  # [2, 5, 12]: 60% on the image
    loss, m = ease_attention_loss(attn, torch.ones(2, 12, dtype=torch.bool), q.repeat(2, 1),
                                  torch.ones(2, 5, dtype=torch.bool), torch.tensor([1.0, 0.9]))
    assert abs(loss.item()) < 1e-6 and float(m["gated"]) == 2.0


def test_gate_excludes_low_reward_trajectories_and_gradient_flows():
    torch.manual_seed(0)
    attn = torch.rand(3, 6, 5).softmax(-1).requires_grad_(True)
    target = torch.rand(3, 5).softmax(-1)
    mask = torch.ones(3, 6, dtype=torch.bool)
    loss, m = ease_attention_loss(attn, torch.ones(3, 5, dtype=torch.bool), target, mask,
                                  torch.tensor([1.0, 0.49, 0.5]))
    loss.backward()
    assert float(m["gated"]) == 2.0  # rewards 1.0 and 0.5 pass the >= 0.5 gate
    assert attn.grad[0].abs().sum() > 0 and attn.grad[2].abs().sum() > 0
    assert torch.equal(attn.grad[1], torch.zeros(6, 5))


def test_nothing_gated_gives_a_grad_connected_zero():
    attn = torch.rand(2, 3, 4).requires_grad_(True)
    loss, m = ease_attention_loss(attn, torch.ones(2, 4, dtype=torch.bool), torch.full((2, 4), 0.25),
                                  torch.ones(2, 3, dtype=torch.bool), torch.tensor([0.0, 0.1]))
    assert loss.item() == 0.0 and loss.requires_grad and float(m["gated"]) == 0.0
    loss.backward()
    assert torch.equal(attn.grad, torch.zeros(2, 3, 4))


def test_global_normaliser_makes_micro_batches_add_up():
    torch.manual_seed(1)
    B, T, N = 4, 7, 6
    attn = torch.rand(B, T, N).softmax(-1)
    target = torch.rand(B, N).softmax(-1)
    mask = torch.arange(T)[None, :] < torch.tensor([7, 3, 5, 1])[:, None]
    img = torch.ones(B, N, dtype=torch.bool)
    img[2, 4:] = False
    rewards = torch.tensor([1.0, 0.8, 0.0, 0.6])
    full, _ = ease_attention_loss(attn, img, target, mask, rewards)
    method = EASECredit()
    norm = method.auxiliary_normaliser(rewards, target)
    assert int(norm) == 3
    parts = [ease_attention_loss(attn[s], img[s], target[s], mask[s], rewards[s], normaliser=norm)[0]
             for s in (slice(0, 2), slice(2, 4))]
    assert sum(parts).item() == pytest.approx(full.item(), rel=1e-6)
    # Without the global normaliser, each half would be its own mean (different sum).
    halves = [ease_attention_loss(attn[s], img[s], target[s], mask[s], rewards[s])[0]
              for s in (slice(0, 2), slice(2, 4))]
    assert sum(halves).item() != pytest.approx(full.item(), rel=1e-3)


def test_credit_class_requests_grad_layer_and_scales_by_lambda():
    method = EASECredit(lambda_attn=0.01)
    req = method.signal_request(num_layers=28)
    assert req.grad_attention_layers == frozenset({18})  # floor(2 * 28 / 3)
    args = _kl_setup([0.2, 0.2], [0.25, 0.75])
    sig = Signals(args[3], torch.zeros(1, dtype=torch.long), args[4], args[1],
                  image_attention={18: args[0]}, evidence_target=args[2])
    loss, m = method.auxiliary_loss(sig)
    assert loss.item() == pytest.approx(0.01 * 0.143841, abs=1e-7)
    assert float(m["loss"]) == pytest.approx(0.143841, abs=1e-5)
    loss.backward()
    assert args[0].grad.abs().sum() > 0
    sig.evidence_target = None
    with pytest.raises(ValueError, match="evidence_target"):
        method.auxiliary_loss(sig)
    with pytest.raises(ValueError, match="direction"):
        EASECredit(direction="both")


def test_warns_once_when_no_reward_reaches_the_threshold():
    # A random-weight start: every reward below 0.5, EASE is silently off (ease/loss 0) -> one warning.
    m = EASECredit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert int(m.auxiliary_normaliser(torch.tensor([0.0, 0.2, -0.5]))) == 0
        assert int(m.auxiliary_normaliser(torch.tensor([0.1, 0.1]))) == 0
        assert int(m.auxiliary_normaliser(torch.tensor([1.0, 0.0]))) == 1
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "EASE: no response reached reward_threshold=0.5 (best reward 0.2)" in messages[0]
    quiet = EASECredit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.auxiliary_normaliser(torch.tensor([1.0, 0.0]))  # one passes: no warning
    assert not caught
