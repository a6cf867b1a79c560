"""Mini-batch updates per rollout batch (``mini_batch_size``, verl's ``ppo_mini_batch_size``).

On the fixed replayed rollout of ``fixed_step`` (4 prompts x G = 4, every group with mixed
rewards): one mini-batch is today's step; k mini-batches are k optimiser steps equal to k
hand-driven AdamW steps on the same slices with the rollout policy's old log-probs and
advantages and per-mini-batch token-mean normalisers; the credit statistics (VGPO's and
VPPO's batch min-max, the group advantages) are the same for every k; dual clip acts once
ratios leave 1; a crash inside a rollout batch resumes exactly.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from visgrpo.credit import ComposedCredit
from visgrpo.credit.vppo import VPPOCredit
from visgrpo.data.signals import SignalRequest
from visgrpo.objectives import compute_advantages, global_normaliser, policy_objective

from .fixed_step import credit_methods, data, rl_module, run_step
from .replay import GradientRecorder

pytestmark = pytest.mark.slow


def _weights(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.policy.named_parameters()}


def _fit(module, max_steps: int = 1, callbacks=(), ckpt_path=None) -> L.Trainer:
    t = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_checkpointing=bool(callbacks),
                  enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                  num_sanity_val_steps=0, callbacks=list(callbacks))
    t.fit(module, datamodule=data(), ckpt_path=ckpt_path)
    return t


def test_one_mini_batch_is_todays_step(in_workspace, monkeypatch):
    today = run_step(rl_module("dapo", "vgpo", fused=False), monkeypatch)
    module = rl_module("dapo", "vgpo", mini_batch_size=4)  # the 4 prompts of the rollout batch
    assert not module.fused
    one = run_step(module, monkeypatch)
    assert module.last_metrics["train/optimizer_steps"] == 1.0
    assert torch.equal(one["advantages"], today["advantages"])
    assert one["loss"] == today["loss"]
    for name, g in today["grads"].items():
        assert torch.equal(one["grads"][name], g), name


def test_k_mini_batches_are_k_hand_driven_steps(in_workspace, monkeypatch):
    module = rl_module("dapo", "none", mini_batch_size=2, micro_batch_size=4)  # 2 mini-batches of 2 micro
    rec = GradientRecorder()
    t = _fit(module, callbacks=[rec])
    assert t.global_step == 2 and module.last_metrics["train/optimizer_steps"] == 2.0
    assert module.rollout_batches == 1
    rollout, rewards = module.last_rollout, module.last_rewards

    hand = rl_module("dapo", "none")  # the same initial weights, driven by hand
    cfg = hand.objective
    params = [p for p in hand.policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    hand.policy.train()
    with torch.no_grad():  # the rollout policy: old log-probs and advantages, once
        old = hand.forward_signals(hand.policy, rollout, SignalRequest()).logp  # [B, T]
    adv, _ = compute_advantages(cfg.advantage, rewards, rollout.group_ids, eps=cfg.adv_eps)  # [B]
    ratios, grads = [], []
    for rows in (torch.arange(0, 8), torch.arange(8, 16)):  # groups {0, 1} then {2, 3}
        mb = rollout.select(rows)
        logp = hand.forward_signals(hand.policy, mb, SignalRequest()).logp
        mask = mb.response_mask
        loss, m = policy_objective(cfg, logp, old[rows], adv[rows, None].expand(mask.shape).float(), mask, None,
                                   global_normaliser(cfg.aggregation, mask))  # the mini-batch's tokens
        ratios.append((float(m["ratio_min"]), float(m["ratio_max"])))
        loss.backward()
        grads.append({n: p.grad.detach().clone() for n, p in hand.policy.named_parameters() if p.grad is not None})
        opt.step()
        opt.zero_grad()
    assert ratios[0] == (pytest.approx(1.0, abs=1e-5), pytest.approx(1.0, abs=1e-5))  # on-policy
    assert ratios[1][0] < 1 - 1e-4 and ratios[1][1] > 1 + 1e-4  # after one step: off-policy
    trained, by_hand = _weights(module), _weights(hand)
    init = _weights(rl_module("dapo", "none"))
    moved = max(float((by_hand[n] - p).abs().max()) for n, p in init.items())
    assert moved > 1e-4
    for n, w in by_hand.items():  # AdamW amplifies round-off in tiny gradients: 1% of the move
        torch.testing.assert_close(trained[n], w, rtol=0, atol=1e-2 * moved, msg=n)
    # The gradients of each step (AdamW is nearly scale-invariant: they pin the normalisers).
    assert len(rec.grads) == 2
    for k in range(2):
        scale = max(float(g.abs().max()) for g in grads[k].values())
        assert rec.grads[k].keys() == grads[k].keys()
        for n, g in grads[k].items():
            torch.testing.assert_close(rec.grads[k][n], g, rtol=1e-4, atol=1e-5 * scale, msg=f"step {k}: {n}")


@pytest.mark.parametrize("credit", ["vgpo", "vppo"])
def test_credit_statistics_do_not_depend_on_mini_batches(in_workspace, monkeypatch, credit):
    def module(**kw):
        module = rl_module("dapo", "none", micro_batch_size=4, **kw)
        methods = [VPPOCredit(entropy_coef=0.0)] if credit == "vppo" else credit_methods(credit)
        module.set_credit(ComposedCredit(methods))
        return module

    runs = {k: run_step(module(mini_batch_size=size), monkeypatch) for k, size in ((1, None), (2, 2), (4, 1))}
    whole = runs[1]["advantages"]
    assert float(whole.abs().max()) > 0
    for k in (2, 4):
        torch.testing.assert_close(runs[k]["advantages"], whole, rtol=0, atol=1e-6, msg=f"{k} mini-batches")


def test_dual_clip_acts_off_policy(in_workspace):
    runs = {}
    for c in (None, 3.0):
        module = rl_module("dapo", "none", mini_batch_size=1, learning_rate=0.05,
                           objective_overrides={"clip_ratio_c": c})
        _fit(module)
        runs[c] = (module.last_metrics, _weights(module))
    m = runs[3.0][0]
    assert m["train/optimizer_steps"] == 4.0
    assert m["policy/clip_frac"] > 0  # logged, and the clip acted once the ratios left 1
    assert m["policy/dual_clip_frac"] > 0
    assert runs[None][0]["policy/dual_clip_frac"] == 0
    diff = max(float((runs[3.0][1][n] - w).abs().max()) for n, w in runs[None][1].items())
    assert diff > 1e-6


class _Crash(RuntimeError):
    pass


def test_crash_inside_a_rollout_batch_resumes_exactly(in_workspace, monkeypatch):
    """Checkpoints fall between rollout batches; a crash after the first of the 2
    mini-batch steps of rollout batch 1 resumes from the checkpoint after rollout batch 0
    and redoes rollout batch 1 whole: the result equals the uninterrupted run.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    import visgrpo.lightning.rlvr as rlvr

    def ckpt(d):
        return ModelCheckpoint(dirpath=str(d), save_last=True, save_top_k=0, every_n_train_steps=2)

    straight = rl_module("dapo", "vgpo", mini_batch_size=2)
    t = _fit(straight, max_steps=4, callbacks=[ckpt(in_workspace / "straight")])
    assert t.global_step == 4 and straight.rollout_batches == 2

    real, calls = rlvr.RLVRModule._optimizer_step, []

    def crashing(self, nonfinite, log):
        calls.append(self.global_step)
        if len(calls) == 4:  # the second mini-batch of rollout batch 1: its first step is done
            raise _Crash
        return real(self, nonfinite, log)

    monkeypatch.setattr(rlvr.RLVRModule, "_optimizer_step", crashing)
    with pytest.raises(_Crash):
        _fit(rl_module("dapo", "vgpo", mini_batch_size=2), max_steps=4,
             callbacks=[ckpt(in_workspace / "crashed")])
    assert calls == [0, 1, 2, 3]
    monkeypatch.setattr(rlvr.RLVRModule, "_optimizer_step", real)
    last = in_workspace / "crashed" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 2 and saved["rollout_batches"] == 1
    resumed = rl_module("dapo", "vgpo", mini_batch_size=2)
    t = _fit(resumed, max_steps=4, ckpt_path=str(last))
    assert t.global_step == 4 and resumed.rollout_batches == 2
    a, b = _weights(straight), _weights(resumed)
    for n, w in a.items():
        torch.testing.assert_close(b[n], w, rtol=0, atol=1e-6, msg=n)
    assert resumed.last_metrics["reward/filtered/outcome"] == straight.last_metrics["reward/filtered/outcome"]


def test_papo_updates_reuse_the_rollout_policys_masked_logprobs(in_workspace, monkeypatch):
    """Both authors' codes compute the masked-image log-probs once per rollout batch with the
    rollout policy: the second mini-batch's PAPO loss sees those, not the updated policy's.
    """
    from visgrpo.credit.papo import PAPOCredit

    seen = []
    real = PAPOCredit.auxiliary_loss

    def spy(self, signals, normaliser=None):
        seen.append(signals.masked_logp.detach().clone())
        return real(self, signals, normaliser)

    monkeypatch.setattr(PAPOCredit, "auxiliary_loss", spy)
    module = rl_module("grpo", "none", mini_batch_size=2, micro_batch_size=8)
    module.set_credit(ComposedCredit([PAPOCredit(gamma=0.02, eta_aug=0.05, eta_ori=0.05)]))
    _fit(module)
    assert len(seen) == 2  # one micro-batch per mini-batch
    fresh = rl_module("grpo", "none")  # the rollout policy: the initial weights
    fresh.perturb_seed = module.perturb_seed
    request = SignalRequest(masked_logp=module.credit.methods[0].perturbation)
    with torch.no_grad():
        want = fresh.forward_signals(fresh.policy, module.last_rollout.select(torch.arange(8, 16)), request).masked_logp
        now = module.forward_signals(module.policy, module.last_rollout.select(torch.arange(8, 16)),
                                     request).masked_logp
    torch.testing.assert_close(seen[1], want, rtol=0, atol=1e-5)
    assert float((now - want).abs().max()) > 1e-3  # the updated policy's would differ
