"""PPO clip (+ dual clip), GSPO and SAPO: hand values, autograd gradients, loop references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visgrpo.objectives import POLICY_LOSSES, aggregate, gspo_loss, ppo_clip_loss, sapo_loss


def _ratios_to_logp(ratios):
    """Logp with old_logp = 0 so that r = exp(logp) equals the given ratios."""
    logp = torch.log(torch.tensor(ratios, dtype=torch.float64)).requires_grad_(True)
    return logp, torch.zeros_like(logp)


def test_ppo_clip_hand_values_and_gradient():
    # eps_low = eps_high = 0.2 -> clip range [0.8, 1.2]; one token per row, N = 6 tokens.
    # row  A    r    -min(rA, clip(r)A)                   clipped?   dL/dlogp = -A r (or 0)
    #  0  +1   1.1   -min(1.1, 1.1)   = -1.1              no         -1.1
    #  1  +1   1.5   -min(1.5, 1.2)   = -1.2              high       0
    #  2  +1   0.5   -min(0.5, 0.8)   = -0.5              no         -0.5
    #  3  -2   0.5   -min(-1.0, -1.6) =  1.6              low        0
    #  4  -2   1.5   -min(-3.0, -2.4) =  3.0              no         3.0
    #  5  -2   0.9   -min(-1.8, -1.8) =  1.8              no         1.8
    logp, old = _ratios_to_logp([[1.1], [1.5], [0.5], [0.5], [1.5], [0.9]])
    adv = torch.tensor([1.0, 1.0, 1.0, -2.0, -2.0, -2.0], dtype=torch.float64)
    mask = torch.ones(6, 1, dtype=torch.bool)
    loss, m = ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    torch.testing.assert_close(
        loss.squeeze(1), torch.tensor([-1.1, -1.2, -0.5, 1.6, 3.0, 1.8], dtype=torch.float64)
    )
    # token_mean over N = 6 tokens: gradient = (-A r) / 6 inside the clip region, 0 outside
    total, _ = aggregate("token_mean", loss, mask)
    (grad,) = torch.autograd.grad(total, logp)
    expected = torch.tensor([-1.1, 0.0, -0.5, 0.0, 3.0, 1.8], dtype=torch.float64) / 6
    torch.testing.assert_close(grad.squeeze(1), expected)
    # 1 of 6 clipped high (row 1), 1 of 6 clipped low (row 3)
    assert m["clip_frac_high"].item() == pytest.approx(1 / 6)
    assert m["clip_frac_low"].item() == pytest.approx(1 / 6)
    assert m["clip_frac"].item() == pytest.approx(2 / 6)
    assert m["dual_clip_frac"].item() == 0.0
    # ratio stats: mean (1.1+1.5+0.5+0.5+1.5+0.9)/6 = 6.0/6 = 1.0; min 0.5; max 1.5
    assert m["ratio_mean"].item() == pytest.approx(1.0)
    assert m["ratio_min"].item() == pytest.approx(0.5)
    assert m["ratio_max"].item() == pytest.approx(1.5)


def test_clip_higher_is_asymmetric():
    # eps_low 0.2, eps_high 0.28, A = +1, r = 1.25: 1.25 < 1.28 -> not clipped, L = -1.25
    # with symmetric 0.2 it would clip to -1.2.
    logp, old = _ratios_to_logp([[1.25]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    adv = torch.tensor([1.0], dtype=torch.float64)
    loss, _ = ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    assert loss.item() == pytest.approx(-1.25)
    loss, _ = ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    assert loss.item() == pytest.approx(-1.2)


def test_dual_clip_bound():
    # A = -2, c = 3 -> bound -c*A = 6.
    # r = 4.0: plain loss -min(-8, -2.4) = 8 > 6 -> 6, gradient 0, counted as dual clip
    # r = 2.5: plain loss 5 < 6 -> 5, gradient -A r = 5
    # A = +1, r = 4.0: dual clip never applies to A > 0 -> -min(4, 1.2) = -1.2
    logp, old = _ratios_to_logp([[4.0], [2.5], [4.0]])
    adv = torch.tensor([-2.0, -2.0, 1.0], dtype=torch.float64)
    mask = torch.ones(3, 1, dtype=torch.bool)
    loss, m = ppo_clip_loss(logp, old, adv, mask, clip_ratio_c=3.0)
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([6.0, 5.0, -1.2], dtype=torch.float64))
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    torch.testing.assert_close(grad.squeeze(1), torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64))
    assert m["dual_clip_frac"].item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="clip_ratio_c"):
        ppo_clip_loss(logp, old, adv, mask, clip_ratio_c=1.0)


def test_padding_is_zero_and_garbage_safe():
    # padded logp = +inf / nan must not leak into the loss or its gradient
    logp = torch.tensor([[0.1, float("inf")], [0.0, float("nan")]], requires_grad=True)
    old = torch.zeros(2, 2)
    mask = torch.tensor([[True, False], [True, False]])
    for name in ("ppo_clip", "gspo", "sapo"):
        loss, _ = POLICY_LOSSES.get(name)(logp, old, torch.tensor([1.0, -1.0]), mask)
        assert loss[:, 1].tolist() == [0.0, 0.0]
        (grad,) = torch.autograd.grad(loss.sum(), logp)
        assert torch.isfinite(grad).all() and grad[:, 1].tolist() == [0.0, 0.0]


def test_shape_errors_name_field():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_loss(x, x, torch.zeros(3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="response_mask"):
        ppo_clip_loss(x, x, torch.zeros(2), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="old_logp"):
        ppo_clip_loss(x, torch.zeros(2, 2), torch.zeros(2), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(KeyError, match="gspo, ppo_clip, sapo"):
        POLICY_LOSSES.get("reinforce")


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    B=st.integers(1, 4),
    T=st.integers(1, 5),
    per_token=st.booleans(),
    dual=st.booleans(),
)
def test_ppo_clip_matches_loop(data, B, T, per_token, dual):
    fl = st.floats(-0.6, 0.6)
    lr = torch.tensor(data.draw(st.lists(fl, min_size=B * T, max_size=B * T)), dtype=torch.float64)
    lr = lr.view(B, T)
    n_adv = B * T if per_token else B
    adv_l = data.draw(st.lists(st.floats(-2, 2), min_size=n_adv, max_size=n_adv))
    adv = torch.tensor(adv_l, dtype=torch.float64).view(B, T) if per_token else torch.tensor(adv_l)
    adv = adv.double()
    mask_l = data.draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
    mask = torch.tensor(mask_l).view(B, T)
    c = 1.5 if dual else None
    logp = lr.clone().requires_grad_(True)
    loss, _ = ppo_clip_loss(
        logp, torch.zeros_like(lr), adv, mask, eps_low=0.2, eps_high=0.28, clip_ratio_c=c
    )
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    for i in range(B):
        for t in range(T):
            a = adv[i, t].item() if per_token else adv[i].item()
            r = math.exp(lr[i, t].item())
            if not mask[i, t]:
                ref, gref = 0.0, 0.0
            else:
                unc, clp = -a * r, -a * min(max(r, 0.8), 1.28)
                ref, gref = (unc, -a * r) if unc >= clp else (clp, 0.0)
                if c is not None and a < 0 and -a * c < ref:
                    ref, gref = -a * c, 0.0
            assert math.isclose(loss[i, t].item(), ref, rel_tol=1e-9, abs_tol=1e-12)
            if abs(r - 0.8) > 1e-9 and abs(r - 1.28) > 1e-9 and abs(r - 1.5) > 1e-9:
                assert math.isclose(grad[i, t].item(), gref, rel_tol=1e-9, abs_tol=1e-12)


def test_gspo_ratio_is_length_normalised():
    # row 0: log-ratios (0.3, 0.1, -0.1) over 3 tokens -> mean 0.1 -> s = e^0.1 = 1.1051709
    # row 1: log-ratio 0.3 over 1 token (+2 padded) -> mean 0.3 -> s = e^0.3 = 1.3498588
    # Same summed log-ratio 0.3, different lengths -> different s.
    # eps 3e-4/4e-4, A = +1: both s > 1.0004 -> clipped: loss = -1.0004 on every real token.
    lr = torch.tensor([[0.3, 0.1, -0.1], [0.3, 5.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    loss, m = gspo_loss(lr, torch.zeros_like(lr), torch.tensor([1.0, 1.0]), mask)
    assert m["seq_ratio_min"].item() == pytest.approx(1.1051709, rel=1e-7)
    assert m["seq_ratio_max"].item() == pytest.approx(1.3498588, rel=1e-7)
    expected = torch.tensor([[-1.0004] * 3, [-1.0004, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected)
    assert m["clip_frac_high"].item() == 1.0  # all 4 real tokens clipped


def test_gspo_token_gradient_equals_sequence_objective():
    # Wide clip range (no clipping): the GSPO-token loss with seq_mean_token_mean must have the
    # gradient of the sequence objective J = -(1/B) sum_i A_i exp(mean_t(logp - old)).
    torch.manual_seed(0)
    B, T = 3, 5
    logp = (0.1 * torch.randn(B, T, dtype=torch.float64)).requires_grad_(True)
    old = 0.1 * torch.randn(B, T, dtype=torch.float64)
    adv = torch.tensor([1.5, -0.7, 0.3], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    loss, _ = gspo_loss(logp, old, adv, mask, eps_low=0.9, eps_high=10.0)
    total, _ = aggregate("seq_mean_token_mean", loss, mask)
    (g,) = torch.autograd.grad(total, logp)
    lengths = mask.sum(-1)
    s = torch.exp(((logp - old) * mask).sum(-1) / lengths)
    ref = -(adv * s).mean()
    (g_ref,) = torch.autograd.grad(ref, logp)
    torch.testing.assert_close(g, g_ref * mask)
    torch.testing.assert_close(total, ref)


def test_sapo_hand_values_and_gradient():
    # g(r) = sigmoid(tau (r-1)) * 4/tau,  L = -g A,  dL/dlogp = -4 s(1-s) r A, s = sigmoid(.)
    # row 0: A=+1, tau=1, r=1: s=0.5 -> L = -0.5*4 = -2;     grad = -4*.25*1*1 = -1
    # row 1: A=-1, tau=1.05, r=1: L = 0.5*4/1.05 = 1.9047619; grad = -4*.25*1*(-1) = +1
    # row 2: A=+1, tau=1, r=2: s = sigmoid(1) = 0.7310586; L = -4*0.7310586 = -2.9242343
    #        grad = -4*0.7310586*0.2689414*2 = -1.5728955
    # row 3: A=-2, tau=1.05, r=0.5: s = sigmoid(-0.525) = 0.3716838
    #        L = 0.3716838*(4/1.05)*2 = 2.8318767; grad = 4*0.3716838*0.6283162*0.5*2 = 0.9341398
    logp, old = _ratios_to_logp([[1.0], [1.0], [2.0], [0.5]])
    adv = torch.tensor([1.0, -1.0, 1.0, -2.0], dtype=torch.float64)
    mask = torch.ones(4, 1, dtype=torch.bool)
    loss, m = sapo_loss(logp, old, adv, mask)
    torch.testing.assert_close(
        loss.squeeze(1),
        torch.tensor([-2.0, 1.9047619, -2.9242343, 2.8318767], dtype=torch.float64),
        rtol=1e-7,
        atol=1e-7,
    )
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    torch.testing.assert_close(
        grad.squeeze(1),
        torch.tensor([-1.0, 1.0, -1.5728955, 0.9341398], dtype=torch.float64),
        rtol=1e-7,
        atol=1e-7,
    )
    # gate weight 4 s (1-s): 1, 1, 4*0.7310586*0.2689414 = 0.7864477, 4*.3716838*.6283162 =
    # 0.9341398 -> mean (1 + 1 + 0.7864477 + 0.9341398)/4 = 0.9301469
    assert m["gate_weight_mean"].item() == pytest.approx(0.9301469, rel=1e-6)
    with pytest.raises(ValueError, match="tau"):
        sapo_loss(logp, old, adv, mask, tau_pos=0.0)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), B=st.integers(1, 4), T=st.integers(1, 5))
def test_gspo_and_sapo_match_loop(data, B, T):
    lr_l = data.draw(st.lists(st.floats(-0.5, 0.5), min_size=B * T, max_size=B * T))
    adv_l = data.draw(st.lists(st.floats(-2, 2), min_size=B, max_size=B))
    mask_l = data.draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
    lr = torch.tensor(lr_l, dtype=torch.float64).view(B, T)
    adv = torch.tensor(adv_l, dtype=torch.float64)
    mask = torch.tensor(mask_l).view(B, T)
    old = torch.zeros_like(lr)
    g_loss, _ = gspo_loss(lr, old, adv, mask, eps_low=0.05, eps_high=0.1)
    s_loss, _ = sapo_loss(lr, old, adv, mask, tau_pos=1.0, tau_neg=1.05)
    for i in range(B):
        real = [lr_l[i * T + t] for t in range(T) if mask_l[i * T + t]]
        s = math.exp(sum(real) / len(real)) if real else 1.0  # length-normalised ratio
        a = adv_l[i]
        for t in range(T):
            if not mask_l[i * T + t]:
                assert g_loss[i, t].item() == 0.0 and s_loss[i, t].item() == 0.0
                continue
            g_ref = -min(s * a, min(max(s, 0.95), 1.1) * a)
            assert math.isclose(g_loss[i, t].item(), g_ref, rel_tol=1e-9, abs_tol=1e-12)
            r = math.exp(lr_l[i * T + t])
            tau = 1.0 if a > 0 else 1.05
            s_ref = -(4 / tau) * a / (1 + math.exp(-tau * (r - 1)))
            assert math.isclose(s_loss[i, t].item(), s_ref, rel_tol=1e-9, abs_tol=1e-12)
