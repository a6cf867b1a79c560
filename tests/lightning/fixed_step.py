"""One RL step on a fixed rollout, recorded: the advantages and losses the objective saw, and
the gradients of the optimiser step. Shared by the behaviour-pinning (golden) test and the
micro-batch invariance test.

The rollout is fixed: the replay engine answers every prompt of the first training batch of
the workspace's synthetic dataset with the same responses (right or wrong by prompt id), so
every group has mixed rewards and DAPO's dynamic sampling keeps the batch as it is.
"""

from __future__ import annotations

import inspect

import lightning as L
import torch

from visgrpo.credit import ATRLCredit, EASECredit, SAYOCredit, VGPOCredit
from visgrpo.lightning import EvidenceDataModule, RLVRModule
from visgrpo.models.loading import PolicyConfig
from visgrpo.rollout import SamplingConfig

from .replay import GradientRecorder

MODEL = "artifacts/tiny_qwen2_5_vl"
PRESETS = ("grpo", "dapo", "dr_grpo", "gspo", "sapo")
CREDITS = ("none", "sayo", "vgpo", "atrl", "ease", "ease+atrl")


def _explicit(cls, **kwargs):
    """``cls(**kwargs)`` with only the options its constructor has: options added later
    (with a default that changes behaviour) are pinned here to the behaviour recorded.
    """
    params = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in params})


def credit_methods(name: str) -> list:
    """The credit methods of ``name`` with every option spelled out (defaults may change).

    SAYO's reward is scaled up (the random tiny model's attention is nearly uniform, so its
    raw reward is ~1e-3) and AT-RL's clusters are small, so both change the advantages.
    """
    build = {
        "sayo": lambda: _explicit(
            SAYOCredit, rho=0.3, layer="last", reward_weight=50.0, region_threshold=0.0, eps=1e-8,
            entropy_attention_pairing="same_position", selection_rounding="ceil",
        ),
        "vgpo": lambda: _explicit(
            VGPOCredit, schedule="linear", beta=0.3, power=2.0, step_start=0.5, gamma=0.5, kappa=0.2,
            psi_min=0.1, psi_max=2.0, alpha_min=0.9, alpha_max=2.0,
            gate_rounding="ceil", hidden_position="predicting",
        ),
        "atrl": lambda: ATRLCredit(  # cluster_size 4: the short replayed responses get several parts
            layers="middle_third", anchor_frac=0.15, top_k=8, cluster_size=4, w_min=0.5, w_max=2.0,
            anchors_only=False, clustering=True, edge_scale=1000, seed=0,
        ),
        "ease": lambda: EASECredit(
            lambda_attn=1e-3, layer="two_thirds", reward_threshold=0.5, max_tokens=64, direction="forward", eps=1e-8,
        ),
    }
    return [] if name == "none" else [build[n]() for n in name.split("+")]


def rl_module(objective: str, credit: str, **kw) -> RLVRModule:
    args = dict(
        policy=PolicyConfig(MODEL), objective=objective, credit=credit_methods(credit), rollout_engine="replay",
        sampling=SamplingConfig(num_generations=4, max_new_tokens=16), learning_rate=1e-3,
        micro_batch_size=16, max_grad_norm=0.0, seed=0,
    )
    args.update(kw)
    return RLVRModule(**args)


def data(batch_size: int = 4) -> EvidenceDataModule:
    return EvidenceDataModule(train_path="artifacts/shapes/train", val_path="artifacts/shapes/validation",
                              model_path=MODEL, batch_size=batch_size, seed=0)


def run_step(module: RLVRModule, monkeypatch) -> dict:
    """Fit one RL step; return the rollout, the advantages [B, T] (0 at padding), the summed
    objective loss and auxiliary loss, and the gradients (before clipping: clipping is off).

    The objective calls are spied on through ``visgrpo.lightning.rlvr.policy_objective``;
    micro-batches are put back in rollout order by their row indices.
    """
    import visgrpo.lightning.rlvr as rlvr

    real = rlvr.policy_objective
    calls: list[tuple] = []

    def spy(cfg, logp, old_logp, adv, mask, ref, norm):
        loss, metrics = real(cfg, logp, old_logp, adv, mask, ref, norm)
        calls.append((adv.detach().clone(), mask.clone(), loss.detach().clone()))
        return loss, metrics

    monkeypatch.setattr(rlvr, "policy_objective", spy)
    rec = GradientRecorder()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=[rec],
    )
    trainer.fit(module, datamodule=data())
    monkeypatch.setattr(rlvr, "policy_objective", real)
    rollout = module.last_rollout
    mask = rollout.response_mask.bool()
    # Each call covers a micro-batch of whole groups, in rollout order: match rows by mask.
    adv = torch.zeros(mask.shape, dtype=torch.float64)
    row = 0
    for a, m, _ in calls:
        n = a.shape[0]
        assert torch.equal(m.bool(), mask[row:row + n, : m.shape[1]]), "micro-batches are not in rollout order"
        adv[row:row + n, : a.shape[1]] = a.double().masked_fill(~m.bool(), 0.0)
        row += n
    assert row == mask.shape[0], (row, mask.shape)
    metrics = module.last_metrics
    return {
        "input_ids": rollout.input_ids.clone(),
        "rewards": module.last_rewards.detach().double().clone(),
        "advantages": adv,  # [B, T]
        "loss": sum(float(c[2]) for c in calls),
        "reward_total": float(metrics["reward/filtered/total"]),  # renamed by the rl branch
        "grads": rec.grads[0],
    }
