"""EASE (arXiv 2605.30912): KL values, gate, gradients, micro-batching (the evidence target
itself: tests/data/test_evidence.py).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from visgrpo.credit import EASECredit
from visgrpo.credit.ease import ease_attention_loss, evenly_spaced_tokens
from visgrpo.data.evidence import smoothed_evidence_target
from visgrpo.data.signals import Signals


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
    img = torch.ones(1, len(q), dtype=torch.bool)
    return attn, img, torch.tensor([q]), torch.ones(1, 1, dtype=torch.bool), torch.tensor(rewards)


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
    rewards = torch.tensor([1.0, 0.49, 0.5])
    loss, m = ease_attention_loss(attn, torch.ones(3, 5, dtype=torch.bool), target, mask, rewards)
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
