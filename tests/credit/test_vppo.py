"""VPPO (docs/methods.md, VPPO) against a line-by-line transcription of the authors' code
(experiments/fidelity/references/vppo.py) on random ragged batches; batch statistics make it
independent of micro-batching; ``vppo + ease`` composes and trains a step.
"""

from __future__ import annotations

import pytest
import torch

from experiments.fidelity.references.vppo import authors_entropy_penalty, authors_vppo
from tests.lightning.conftest import in_workspace, workspace  # noqa: F401  (fixtures of the step test)
from visgrpo.credit import build_credit
from visgrpo.credit.base import ComposedCredit
from visgrpo.credit.ease import EASECredit
from visgrpo.credit.vppo import VPPOCredit, token_dependency
from visgrpo.data.signals import Signals


def _batch(seed: int, B: int = 8, T: int = 13):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3) * mask
    masked = (logp + torch.randn(B, T, generator=g, dtype=torch.float64)) * mask
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    sig = Signals(response_mask=mask, group_ids=torch.arange(B) // 2, rewards=torch.zeros(B),
                  image_mask=torch.ones(B, 1, dtype=torch.bool), logp=logp, masked_logp=masked)
    return sig, adv


def _sub(sig: Signals, rows) -> Signals:
    idx = torch.tensor(rows)
    return Signals(response_mask=sig.response_mask[idx], group_ids=sig.group_ids[idx], rewards=sig.rewards[idx],
                   image_mask=sig.image_mask[idx], logp=sig.logp[idx], masked_logp=sig.masked_logp[idx])


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_authors_code(seed):
    sig, adv = _batch(seed)
    B, T = sig.response_mask.shape
    method = VPPOCredit()
    got, metrics = method.token_advantages(adv[:, None].expand(B, T).clone(), sig)
    want = authors_vppo(adv.tolist(), sig.logp.tolist(), sig.masked_logp.tolist(),
                        sig.response_mask.long().tolist(), [list(range(B))])
    diff = (got * sig.response_mask - torch.tensor(want, dtype=torch.float64)).abs().max()
    assert float(diff) < 1e-6
    alpha = (got.abs().sum(-1) / (adv.abs() * (got != 0).sum(-1)).clamp_min(1e-12))
    assert float(metrics["alpha_mean"]) == pytest.approx(1.0, abs=1e-6)  # b_max chosen so the mean is 1
    assert float(alpha.min()) >= 0.9 - 1e-9
    kept = (got != 0).sum(-1)
    n = sig.response_mask.sum(-1)
    assert torch.equal(kept, torch.ceil(n * 0.4).long())


@pytest.mark.parametrize("seed", range(3))
def test_micro_batching_changes_nothing(seed):
    sig, adv = _batch(seed)
    B, T = sig.response_mask.shape
    method = ComposedCredit([VPPOCredit()])
    whole, _ = method.token_advantages(adv[:, None].expand(B, T).clone(), sig)
    parts = [[0, 1], [2, 3, 4, 5], [6, 7]]
    reduce = {"min": torch.minimum, "max": torch.maximum, "sum": torch.add}
    stats: dict = {}
    for rows in parts:
        for k, v in method.batch_statistics(_sub(sig, rows)).items():
            stats[k] = reduce[method.batch_reductions[k]](stats[k], v) if k in stats else v
    for rows in parts:
        got, _ = method.token_advantages(adv[rows, None].expand(len(rows), T).clone(), _sub(sig, rows), stats)
        torch.testing.assert_close(got, whole[rows], atol=1e-12, rtol=0)


def test_options_and_entropy_penalty():
    sig, adv = _batch(0)
    B, T = sig.response_mask.shape
    a = adv[:, None].expand(B, T).clone()
    off, _ = VPPOCredit(token_filtering=False, advantage_shaping=False).token_advantages(a, sig)
    assert torch.equal(off, a)
    only_filter, _ = VPPOCredit(advantage_shaping=False).token_advantages(a, sig)
    dep = token_dependency(sig.logp, sig.masked_logp, sig.response_mask)
    top = dep.masked_fill(~sig.response_mask, -1).argmax(-1)  # the most dependent token is kept
    assert torch.equal(only_filter[torch.arange(B), top], a[torch.arange(B), top])
    logp = sig.logp.clone().requires_grad_(True)
    sig.logp = logp
    loss, _ = VPPOCredit().auxiliary_loss(sig, normaliser=sig.response_mask.sum())
    expected = authors_entropy_penalty(logp.tolist(), sig.response_mask.long().tolist())
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-9)
    loss.backward()
    assert float(logp.grad[sig.response_mask].max()) == pytest.approx(-0.06 / int(sig.response_mask.sum()))
    assert VPPOCredit(entropy_coef=0.0).auxiliary_loss(sig)[0] is None
    with pytest.raises(ValueError, match="masked_logp"):
        VPPOCredit().token_advantages(a, Signals(sig.response_mask, sig.group_ids, sig.rewards, sig.image_mask,
                                                 logp=sig.logp))


def test_composes_with_ease_request():
    credit = build_credit([VPPOCredit(), EASECredit()])
    req = credit.signal_request(6)
    assert req.masked_logp is not None and req.masked_logp.prob == 0.5 and req.grad_attention_layers == {4}
    assert credit.loss_request(6).masked_logp is None  # VPPO's loss reads logp only


@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "two_pass"])
def test_vppo_and_ease_train_a_step_independent_of_micro_batching(in_workspace, monkeypatch, fused):  # noqa: F811
    from tests.lightning.fixed_step import rl_module, run_step

    runs = {}
    for size in (16, 4):
        module = rl_module("dapo", "none", micro_batch_size=size, fused=fused)
        module.set_credit(ComposedCredit([VPPOCredit(), EASECredit()]))
        assert module.signal_request.masked_logp is not None and module.signal_request.grad_attention_layers
        runs[size] = run_step(module, monkeypatch)
    whole, part = runs[16], runs[4]
    assert float(whole["advantages"].abs().max()) > 0
    torch.testing.assert_close(part["advantages"], whole["advantages"], rtol=1e-6, atol=1e-6)
    for name, g in whole["grads"].items():
        assert torch.isfinite(g).all()
        scale = max(float(x.abs().max()) for x in whole["grads"].values())
        torch.testing.assert_close(part["grads"][name], g, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("seed", range(4))
def test_entropy_selection_matches_the_authors_code(seed):
    sig, adv = _batch(seed)
    B, T = sig.response_mask.shape
    g = torch.Generator().manual_seed(100 + seed)
    sig.entropies = torch.rand(B, T, generator=g, dtype=torch.float64) * sig.response_mask
    a = adv[:, None].expand(B, T).clone()
    args = (adv.tolist(), sig.logp.tolist(), sig.masked_logp.tolist(), sig.response_mask.long().tolist(),
            [list(range(B))])
    assert VPPOCredit().request().entropies is False
    assert VPPOCredit(entropy_filtering=True).request().entropies is True
    # entropy OR perception, advantage shaping on (the authors' flags all True)
    got, m = VPPOCredit(entropy_filtering=True, k_rounding="float32").token_advantages(a, sig)
    want = torch.tensor(authors_vppo(*args, entropy=sig.entropies.tolist()), dtype=torch.float64)
    assert float((got * sig.response_mask - want).abs().max()) < 1e-6
    perception_only, _ = VPPOCredit(k_rounding="float32").token_advantages(a, sig)
    assert ((got != 0).sum() > (perception_only != 0).sum())  # the entropy mask added tokens
    assert float(m["entropy_token_frac"]) > 0
    # entropy only (perception and shaping off)
    got, _ = VPPOCredit(token_filtering=False, advantage_shaping=False, entropy_filtering=True,
                        k_rounding="float32").token_advantages(a, sig)
    want = torch.tensor(authors_vppo(*args, entropy=sig.entropies.tolist(), perception=False), dtype=torch.float64)
    assert float((got * sig.response_mask - want).abs().max()) < 1e-12


def test_float32_k_is_the_authors_and_exact_k_is_the_default():
    # Lengths where 0.3 * n rounds up past an integer in float32 (50 -> 16 tokens, not 15),
    # and lengths where it does not (10, 7, 11, 33, 64).
    lengths = torch.tensor([10, 50, 90, 100, 7, 11, 33, 64])
    B, T = len(lengths), int(lengths.max())
    mask = torch.arange(T)[None, :] < lengths[:, None]
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3) * mask
    masked = (logp + torch.randn(B, T, generator=g, dtype=torch.float64)) * mask
    sig = Signals(response_mask=mask, group_ids=torch.arange(B) // 2, rewards=torch.zeros(B),
                  image_mask=torch.ones(B, 1, dtype=torch.bool), logp=logp, masked_logp=masked)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    a = adv[:, None].expand(B, T).clone()
    want = torch.tensor(authors_vppo(adv.tolist(), logp.tolist(), masked.tolist(), mask.long().tolist(),
                                     [list(range(B))], top_p=0.3), dtype=torch.float64)
    theirs, _ = VPPOCredit(top_frac=0.3, k_rounding="float32").token_advantages(a, sig)
    assert float((theirs * mask - want).abs().max()) < 1e-6
    exact, _ = VPPOCredit(top_frac=0.3).token_advantages(a, sig)
    assert (exact != 0).sum(-1).tolist() == [3, 15, 27, 30, 3, 4, 10, 20]
    assert (theirs != 0).sum(-1).tolist() == [3, 16, 28, 31, 3, 4, 10, 20]
    with pytest.raises(ValueError, match="k_rounding"):
        VPPOCredit(k_rounding="double")
