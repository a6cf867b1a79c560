"""VGPO (arXiv 2604.09349): hand-computed psi/alpha, focus, schedules, loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.fidelity.references import vgpo as vgpo_reference
from visgrpo.credit import VGPOCredit
from visgrpo.credit.vgpo import (
    compensation,
    group_minmax,
    masked_minmax,
    normalised_position,
    vgpo_token_advantages,
    vgpo_weights,
    visual_focus,
)
from visgrpo.data.signals import Signals


def test_psi_alpha_on_a_hand_built_2x4_example():
    # Both responses in one group, 4 real tokens: u = [0, 1/3, 2/3, 1]; candidates u >= 0.5
    # are t = 2, 3; gate ceil(0.2 * 2) = 1 token (the higher w). Linear C = 0.3 u.
    w = torch.tensor([[0.0, 0.5, 1.0, 0.25], [0.2, 0.2, 0.6, 1.0]], dtype=torch.float64)
    mask = torch.ones(2, 4, dtype=torch.bool)
    psi, alpha, m = vgpo_weights(w, mask, torch.tensor([7, 7]))
    # Row 0: gate t=2 (w 1.0 > 0.25), C = 0.3 * 2/3 = 0.2 -> w' = [0, .5, 1.2, .25];
    #   w_hat = w'/1.2 = [0, 5/12, 1, 5/24]; mean = 1.625/4 = 0.40625;
    #   psi = 1 + w_hat - 0.40625; phi_0 = 1.625.
    # Row 1: gate t=3 (1.0 > 0.6), C = 0.3 -> w' = [.2, .2, .6, 1.3]; w_hat = (w'-.2)/1.1
    #   = [0, 0, 4/11, 1]; mean = (15/11)/4 = 15/44; phi_1 = 15/11.
    row0 = [1 + x - 0.40625 for x in (0.0, 5 / 12, 1.0, 5 / 24)]
    row1 = [1 + x - 15 / 44 for x in (0.0, 0.0, 4 / 11, 1.0)]
    torch.testing.assert_close(psi, torch.tensor([row0, row1], dtype=torch.float64))
    # phi_norm within the group = [1, 0], mean 0.5 -> alpha = [1.5, clamp(0.5) = 0.9].
    torch.testing.assert_close(alpha, torch.tensor([1.5, 0.9], dtype=torch.float64))
    assert float(m["gated_frac"]) == pytest.approx(2 / 8)
    # The loop reference agrees on the same hand example.
    ref_psi, ref_alpha = vgpo_reference.reference_weights(w.tolist(), mask.tolist(), [7, 7])
    assert ref_psi == [pytest.approx(row0), pytest.approx(row1)] and ref_alpha == pytest.approx([1.5, 0.9])


def test_final_advantage_multiplies_alpha_and_psi_and_keeps_padding():
    # Same 2x4 example through the full path: hidden states chosen so that the batch
    # min-max of the cosine gives the w above is hard; instead check A = A_i * alpha * psi
    # against vgpo_weights on the focus the function itself computes.
    torch.manual_seed(0)
    h, v = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)[:, None].expand(2, 5)
    out, _ = vgpo_token_advantages(adv, h, v, mask, torch.tensor([0, 0]))
    psi, alpha, _ = vgpo_weights(visual_focus(h, v, mask), mask, torch.tensor([0, 0]))
    expected = adv * alpha[:, None] * psi
    torch.testing.assert_close(out[mask], expected[mask])
    assert out[0, 4] == 2.0  # padding keeps the incoming advantage


def test_visual_focus_cosine_then_batch_minmax():
    # cos([1,0],[1,0]) = 1, cos([0,1],[1,0]) = 0, cos([-1,0],[1,0]) = -1; padding ignored.
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [5.0, 5.0]]])
    v = torch.tensor([[2.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    # min-max over the 3 valid tokens: (cos + 1) / 2 = [1, 0.5, 0]; padding -> 0.
    torch.testing.assert_close(visual_focus(h, v, mask), torch.tensor([[1.0, 0.5, 0.0, 0.0]]))


def test_positions_and_schedules():
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    u = normalised_position(mask)
    # n = 5: u = k / 4; n = 1: u = 0 (our convention); padding 0.
    torch.testing.assert_close(u, torch.tensor([[0, 0.25, 0.5, 0.75, 1.0, 0], [0.0] * 6], dtype=torch.float64))
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(compensation(x, "linear"), 0.3 * x)
    torch.testing.assert_close(compensation(x, "exponential", power=2.0), torch.tensor([0.0, 0.01875, 0.075, 0.3]))
    torch.testing.assert_close(compensation(x, "step", step_start=0.5), torch.tensor([0.0, 0.0, 0.3, 0.3]))
    with pytest.raises(ValueError, match="linear, exponential, step"):
        compensation(x, "cubic")


def test_degenerate_minmax_is_neutral_not_nan():
    # All-equal cosines: the batch min-max gives w = 0, so w' = 0 whatever the gate,
    # w_hat = 0 everywhere -> psi = 1; equal phi in the group -> alpha = 1.
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert torch.equal(masked_minmax(torch.full((2, 3), 0.7), mask), torch.zeros(2, 3))
    h = torch.ones(2, 3, 4)
    w = visual_focus(h, torch.ones(2, 4), mask)
    assert torch.equal(w, torch.zeros(2, 3))
    psi, alpha, _ = vgpo_weights(w, mask, torch.tensor([1, 1]))
    assert torch.equal(psi, torch.ones(2, 3)) and torch.equal(alpha, torch.ones(2))
    # Singleton group: phi_norm = 0 = its mean -> alpha = 1.
    norm, mean = group_minmax(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([5, 9, 9]))
    torch.testing.assert_close(norm, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(mean, torch.tensor([0.0, 0.5, 0.5]))


def _random_case(gen, B, T, D, n_groups):
    lengths = torch.randint(0, T + 1, (B,), generator=gen)
    lengths[0] = T
    lengths[-1] = 1  # one-token response
    mask = torch.arange(T)[None, :] < lengths[:, None]
    h = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    v = torch.randn(B, D, generator=gen, dtype=torch.float64)
    gids = torch.randint(0, n_groups, (B,), generator=gen) * 10 + 3  # non-compact ids
    adv = torch.randn(B, T, generator=gen, dtype=torch.float64)
    return adv, h, v, mask, gids


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
@pytest.mark.parametrize("schedule", ["linear", "exponential", "step"])
@pytest.mark.parametrize("seed", range(4))
def test_vectorised_equals_loop_reference(schedule, seed, rounding):
    gen = torch.Generator().manual_seed(seed)
    adv, h, v, mask, gids = _random_case(gen, B=6, T=23, D=5, n_groups=3)
    kw = {"schedule": schedule, "beta": 0.3 + 0.1 * seed, "gamma": 0.4, "kappa": 0.3, "gate_rounding": rounding}
    out, _ = vgpo_token_advantages(adv, h, v, mask, gids, **kw)
    ref = vgpo_reference.reference_vgpo(adv, h, v, mask, gids, **kw)
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float64), atol=1e-10, rtol=1e-10)


def test_reference_is_not_trivially_identity():
    # Guard for the equality test: on random input VGPO changes the advantages.
    gen = torch.Generator().manual_seed(11)
    adv, h, v, mask, gids = _random_case(gen, B=4, T=16, D=4, n_groups=2)
    ref = torch.tensor(vgpo_reference.reference_vgpo(adv, h, v, mask, gids), dtype=torch.float64)
    assert not torch.allclose(ref[mask], adv[mask])


def test_credit_class_reads_signals_and_requests_hidden_states():
    method = VGPOCredit(schedule="step")
    req = method.signal_request(12)
    assert req.hidden_states and not req.image_attention_layers
    gen = torch.Generator().manual_seed(3)
    adv, h, v, mask, gids = _random_case(gen, B=4, T=9, D=3, n_groups=2)
    # The default reads the hidden states at the tokens' own positions; "predicting" the
    # rows before them (here a different random tensor, so the two cannot be confused).
    h_pred = torch.randn(h.shape, generator=gen, dtype=torch.float64)
    sig = Signals(mask, gids, torch.zeros(4), torch.ones(4, 2, dtype=torch.bool), hidden=h_pred,
                  own_hidden=h, image_hidden_mean=v)
    out, metrics = method.token_advantages(adv, sig)
    ref = vgpo_reference.reference_vgpo(adv, h, v, mask, gids, schedule="step")
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float64))
    assert math.isfinite(float(metrics["psi_mean"]))
    old = VGPOCredit(schedule="step", gate_rounding="ceil", hidden_position="predicting")
    out, _ = old.token_advantages(adv, sig)
    ref = vgpo_reference.reference_vgpo(adv, h_pred, v, mask, gids, schedule="step", gate_rounding="ceil")
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float64))
    with pytest.raises(ValueError, match="gate_rounding"):
        VGPOCredit(gate_rounding="round")
    with pytest.raises(ValueError, match="hidden_position"):
        VGPOCredit(hidden_position="next")
    with pytest.raises(ValueError, match="hidden"):
        method.token_advantages(adv, Signals(mask, gids, torch.zeros(4), torch.ones(4, 2, dtype=torch.bool)))
