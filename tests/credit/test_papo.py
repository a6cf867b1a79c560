"""PAPO (docs/methods.md, PAPO) against a line-by-line transcription of the authors' loss
(experiments/fidelity/references/papo.py) on random ragged batches: value, gradient, the global
token normaliser under micro-batching, and one trained step in both modes.
"""

from __future__ import annotations

import pytest
import torch

from experiments.fidelity.references.papo import authors_papo_terms, low_var_kl
from tests.lightning.conftest import in_workspace, workspace  # noqa: F401  (fixtures of the step test)
from visgrpo.credit import build_credit
from visgrpo.credit.base import ComposedCredit
from visgrpo.credit.papo import PAPOCredit
from visgrpo.data.signals import Signals


def _batch(seed: int, B: int = 6, T: int = 11):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3) * mask
    masked = (logp + 2 * torch.randn(B, T, generator=g, dtype=torch.float64)) * mask
    return mask, logp, masked


def _signals(mask, logp, masked) -> Signals:
    B = mask.shape[0]
    return Signals(response_mask=mask, group_ids=torch.arange(B), rewards=torch.zeros(B),
                   image_mask=torch.ones(B, 1, dtype=torch.bool), logp=logp, masked_logp=masked)


@pytest.mark.parametrize(("seed", "gamma", "eta"), [(0, 0.01, 0.03), (1, 0.02, 0.05), (2, 0.01, 0.03), (3, 1.0, 0.5)])
def test_matches_the_authors_loss_and_gradient(seed, gamma, eta):
    mask, logp, masked = _batch(seed)
    x = logp.clone().requires_grad_(True)
    method = PAPOCredit(gamma=gamma, eta_aug=eta, eta_ori=eta)
    loss, metrics = method.auxiliary_loss(_signals(mask, x, masked))
    want, kl = authors_papo_terms(logp.tolist(), masked.tolist(), mask.long().tolist(), gamma, eta, eta)
    assert abs(float(loss.detach()) - want) < 1e-9 and abs(float(metrics["kl_prcp"]) - kl) < 1e-9
    loss.backward()
    h = 1e-6  # central differences of the reference, token by token
    n = int(mask.sum())
    for b, t in mask.nonzero().tolist()[:12]:
        up, dn = logp.tolist(), logp.tolist()
        up[b][t] += h
        dn[b][t] -= h
        num = (authors_papo_terms(up, masked.tolist(), mask.long().tolist(), gamma, eta, eta)[0]
               - authors_papo_terms(dn, masked.tolist(), mask.long().tolist(), gamma, eta, eta)[0]) / (2 * h)
        assert abs(float(x.grad[b, t]) - num) < 1e-6, (b, t)
    assert float(x.grad.masked_fill(mask, 0.0).abs().sum()) == 0.0
    assert n > 0


def test_clamps_and_sign():
    assert low_var_kl(0.0, 50.0) == 10.0  # clamp at 10 after exp of the clamped 20
    mask, logp, masked = _batch(4)
    x = logp.clone().requires_grad_(True)
    loss, _ = PAPOCredit(gamma=1.0, eta_aug=0.0, eta_ori=0.0).auxiliary_loss(_signals(mask, x, masked))
    assert float(loss.detach()) < 0  # -gamma KL: minimising the loss maximises KL_prcp


def test_global_normaliser_makes_micro_batches_sum_to_the_whole():
    mask, logp, masked = _batch(5)
    method = ComposedCredit([PAPOCredit()])
    norm = method.auxiliary_normaliser(torch.zeros(6), None, mask)
    whole, _ = method.auxiliary_loss(_signals(mask, logp, masked), norm)
    parts = sum(method.auxiliary_loss(_signals(mask[r], logp[r], masked[r]), norm)[0] for r in ([0, 1], [2, 3, 4, 5]))
    assert abs(float(parts) - float(whole)) < 1e-12


def test_requests_of_the_masked_logprobs():
    credit = build_credit("papo")
    assert credit.signal_request(4).masked_logp.prob == 0.6
    assert credit.loss_request(4).masked_logp is None  # later updates reuse the rollout policy's
    with pytest.raises(ValueError, match="masked_logp"):
        PAPOCredit().auxiliary_loss(Signals(torch.ones(1, 2, dtype=torch.bool), torch.zeros(1), torch.zeros(1),
                                            torch.ones(1, 1, dtype=torch.bool), logp=torch.zeros(1, 2)))


@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "two_pass"])
def test_papo_trains_a_step_independent_of_micro_batching(in_workspace, monkeypatch, fused):  # noqa: F811
    from tests.lightning.fixed_step import rl_module, run_step

    runs = {}
    for size in (16, 4):
        module = rl_module("grpo", "none", micro_batch_size=size, fused=fused)
        module.set_credit(ComposedCredit([PAPOCredit(gamma=0.02, eta_aug=0.05, eta_ori=0.05)]))
        runs[size] = run_step(module, monkeypatch)
    whole, part = runs[16], runs[4]
    scale = max(float(x.abs().max()) for x in whole["grads"].values())
    assert scale > 0
    for name, g in whole["grads"].items():
        torch.testing.assert_close(part["grads"][name], g, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("clip", "top_p"), [(0.2, None), (None, 0.2), (0.2, 0.2), (0.05, 0.5)])
def test_kl_clipping_and_token_mask_match_the_authors_code(seed, clip, top_p):
    mask, logp, masked = _batch(seed)
    x = logp.clone().requires_grad_(True)
    method = PAPOCredit(gamma=0.5, eta_aug=0.03, eta_ori=0.03, kl_clip=clip, kl_token_top_frac=top_p)
    loss, metrics = method.auxiliary_loss(_signals(mask, x, masked))
    args = (masked.tolist(), mask.long().tolist(), 0.5, 0.03, 0.03, clip, top_p)
    want, kl = authors_papo_terms(logp.tolist(), *args)
    assert abs(float(loss.detach()) - want) < 1e-9 and abs(float(metrics["kl_prcp"]) - kl) < 1e-9
    plain = authors_papo_terms(logp.tolist(), masked.tolist(), mask.long().tolist(), 0.5, 0.03, 0.03)[1]
    assert kl < plain  # the option changed KL_prcp
    loss.backward()
    h = 1e-6
    for b, t in mask.nonzero().tolist()[:10]:
        up, dn = logp.tolist(), logp.tolist()
        up[b][t] += h
        dn[b][t] -= h
        num = (authors_papo_terms(up, *args)[0] - authors_papo_terms(dn, *args)[0]) / (2 * h)
        assert abs(float(x.grad[b, t]) - num) < 1e-6, (b, t)


def test_annealing_follows_the_authors_controller():
    from experiments.fidelity.references.papo import AnnealingKLController

    method = PAPOCredit(gamma=0.02, eta_aug=0.05, eta_ori=0.05, schedule="annealing", anneal_steps=5)
    ctrl = AnnealingKLController(0.02, 0.0, 5)
    mask, logp, masked = _batch(7)
    for step in range(8):
        coef = ctrl.kl_coef  # the authors store the coefficient, then update the controller
        ctrl.update(None, 1)
        method.set_progress(step)
        assert method.current_gamma() == pytest.approx(coef, abs=1e-15)
        loss, _ = method.auxiliary_loss(_signals(mask, logp, masked))
        want = authors_papo_terms(logp.tolist(), masked.tolist(), mask.long().tolist(), 0.02, 0.05, 0.05, coef=coef)[0]
        assert abs(float(loss) - want) < 1e-9, step
    assert method.current_gamma() == 0.0
    with pytest.raises(ValueError, match="anneal_steps"):
        PAPOCredit(schedule="annealing")


def test_recomputed_masked_logprobs_carry_the_gradient():
    mask, logp, masked = _batch(8)
    x, y = logp.clone().requires_grad_(True), masked.clone().requires_grad_(True)
    PAPOCredit().auxiliary_loss(_signals(mask, x, y))[0].backward()
    assert y.grad is None  # the default: constants, as RECOMPUTE_AUG_LOG_PROBS = False
    method = PAPOCredit(recompute_masked_logp=True)
    assert method.loss_request(4).masked_logp.with_grad and method.request().masked_logp.with_grad
    method.auxiliary_loss(_signals(mask, x, y))[0].backward()
    h = 1e-6
    for b, t in mask.nonzero().tolist()[:10]:
        up, dn = masked.tolist(), masked.tolist()
        up[b][t] += h
        dn[b][t] -= h
        num = (authors_papo_terms(logp.tolist(), up, mask.long().tolist())[0]
               - authors_papo_terms(logp.tolist(), dn, mask.long().tolist())[0]) / (2 * h)
        assert abs(float(y.grad[b, t]) - num) < 1e-6, (b, t)


@pytest.mark.slow
def test_recompute_trains_through_the_masked_forward(in_workspace, monkeypatch):  # noqa: F811
    from tests.lightning.fixed_step import rl_module, run_step

    runs = {}
    for recompute in (False, True):
        module = rl_module("grpo", "none", micro_batch_size=16)
        module.set_credit(ComposedCredit([PAPOCredit(gamma=0.02, eta_aug=0.05, eta_ori=0.05,
                                                     recompute_masked_logp=recompute)]))
        runs[recompute] = run_step(module, monkeypatch)
    scale = max(float(g.abs().max()) for g in runs[False]["grads"].values())
    diff = max(float((runs[True]["grads"][n] - g).abs().max()) for n, g in runs[False]["grads"].items())
    assert all(bool(torch.isfinite(g).all()) for g in runs[True]["grads"].values())
    assert diff > 1e-4 * scale  # the masked forward's graph added its gradient (H_aug, KL_prcp)
