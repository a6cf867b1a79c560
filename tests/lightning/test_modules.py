"""RLVRModule and SFTModule driven by a plain Trainer with a replay engine: the step logic
(non-finite guard, fused vs two-pass, PPO epochs), evaluation numbers, SFT, LoRA
checkpoints and export.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from visgrpo.credit import CreditMethod
from visgrpo.credit.sayo import SAYOCredit
from visgrpo.credit.vgpo import VGPOCredit
from visgrpo.data.signals import SignalRequest
from visgrpo.lightning import EvidenceDataModule, RLVRModule, SFTModule
from visgrpo.models.loading import PolicyConfig
from visgrpo.models.lora import LoraSettings
from visgrpo.rollout import SamplingConfig

from .replay import GradientRecorder, assert_started_from, is_right, probe_training_steps

pytestmark = pytest.mark.slow
MODEL = "artifacts/tiny_qwen2_5_vl"


def rl_module(**kw) -> RLVRModule:
    args = dict(
        policy=PolicyConfig(MODEL), objective="dapo", rollout_engine="replay",
        sampling=SamplingConfig(num_generations=4, max_new_tokens=16), learning_rate=1e-3,
        micro_batch_size=16, seed=0,
    )
    args.update(kw)
    return RLVRModule(**args)


def data(batch_size: int = 4, **kw) -> EvidenceDataModule:
    return EvidenceDataModule(train_path="artifacts/shapes/train", val_path="artifacts/shapes/validation",
                              model_path=MODEL, batch_size=batch_size, seed=0, **kw)


def trainer(max_steps: int = 1, callbacks=(), **kw) -> L.Trainer:
    args = dict(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                num_sanity_val_steps=0, callbacks=list(callbacks))
    args.update(kw)
    return L.Trainer(**args)


def weights(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.policy.named_parameters()}


def test_nonfinite_loss_skips_the_step_and_keeps_the_weights(in_workspace, monkeypatch):
    import visgrpo.lightning.rlvr as rlvr

    real = rlvr.policy_objective

    def nan_objective(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        return loss * float("nan"), metrics

    monkeypatch.setattr(rlvr, "policy_objective", nan_objective)
    module = rl_module()
    before = weights(module)
    t = trainer(max_steps=2)
    t.fit(module, datamodule=data())
    assert t.global_step == 2  # skipped steps still count
    assert module.last_metrics["train/nonfinite_skipped"] == 1.0
    for n, p in module.policy.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
        assert p.grad is None
    state = t.optimizers[0].state
    assert all(len(s) == 0 for s in state.values())  # Adam moments untouched


def test_fused_pass_equals_two_pass_gradients(in_workspace):
    grads = {}
    for fused in (True, False):
        rec = GradientRecorder()
        module = rl_module(fused=fused, credit=[SAYOCredit(), VGPOCredit()])
        trainer(max_steps=1, callbacks=[rec]).fit(module, datamodule=data())
        grads[fused] = rec.grads[0]
    scale = max(g.abs().max().item() for g in grads[True].values())
    assert scale > 0
    for k, g in grads[True].items():
        torch.testing.assert_close(grads[False][k], g, rtol=1e-4, atol=1e-6 * scale)


def test_ppo_epochs_step_once_per_pass(in_workspace):
    module = rl_module(ppo_epochs=2)
    assert not module.fused
    t = trainer(max_steps=2)  # optimiser steps: one RL step of 2 passes
    t.fit(module, datamodule=data())
    assert t.global_step == 2
    m = module.last_metrics
    # pass 1 is on-policy (ratio exactly 1); pass 2 follows one AdamW step of lr 1e-3
    assert float(m["policy/ratio_max"]) > 1.0
    assert float(m["policy/ratio_min"]) < 1.0


def test_validation_accuracy_counts_right_answers(in_workspace):
    from datasets import load_from_disk

    val = load_from_disk("artifacts/shapes/validation")
    expected = sum(is_right(i, 0) for i in val["id"]) / len(val)  # greedy = response 0
    assert 0 < expected < 1
    module = rl_module()
    (out,) = trainer(limit_val_batches=None).validate(module, datamodule=data(val_batch_size=len(val)))
    assert out["val/accuracy"] == pytest.approx(expected)
    assert out["val/response_length"] > 0
    assert 0 <= out["val/visual_mass"] <= 1
    # Target diagnostics (visgrpo/credit/mechanism.py): the evidence ratio at every layer;
    # EASE's at its layer floor(2L/3) is that layer's value; every method's target is there.
    layers = module.num_layers
    for k in range(layers):
        assert math.isfinite(out[f"val/evidence_ratio_L{k}"])
    assert out["val/ease/evidence_ratio"] == pytest.approx(out[f"val/evidence_ratio_L{2 * layers // 3}"], rel=1e-5)
    assert out["val/evidence_ratio"] == pytest.approx(out[f"val/evidence_ratio_L{layers - 1}"], rel=1e-5)
    for key in ("val/ease/kl", "val/sayo/region_ratio", "val/vgpo/focus_slope", "val/atrl/weight_std",
                "val/vppo/dependency",
                "val/atrl/clusters_per_response"):
        assert math.isfinite(out[key]), key


def test_attention_maps_at_a_chosen_layer(in_workspace):
    from visgrpo.lightning.callbacks import AttentionOverlay

    module = rl_module()
    dm = data()
    dm.set_processor(module.processor)
    prompts = dm.fixed_prompts(2)
    default = module.attention_maps(prompts)  # the diagnostics layer: last
    last = module.attention_maps(prompts, layer=module.num_layers - 1)
    first = module.attention_maps(prompts, layer=0)
    assert AttentionOverlay(layer="two_thirds").layer == "two_thirds"
    for (_, d, _), (_, a, _), (_, b, _) in zip(default, last, first, strict=True):
        assert d.shape == b.shape and (d == a).all()
        assert not (a == b).all()  # another layer, another map
    # the callback draws one PNG per image and listed layer, named after the layer
    trainer = type("T", (), {"datamodule": dm, "default_root_dir": str(in_workspace), "loggers": [], "logger": None})()
    paths = AttentionOverlay(num_images=2, layer=[0, "last"], out_dir=str(in_workspace / "ov"))._render(
        trainer, module, "final")
    assert sorted(p.name for p in paths) == ["final_L0_img0.png", "final_L0_img1.png", "final_Llast_img0.png",
                                             "final_Llast_img1.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_sft_learns_the_target(in_workspace):
    from visgrpo.lightning.sft import teacher_forced_batch

    module = SFTModule(PolicyConfig(MODEL), learning_rate=1e-2, rollout_engine="replay")
    dm = data()
    dm.set_processor(module.processor)
    batch = dm.fixed_prompts(3)
    targets = module.targets(batch)
    assert targets[0] == f"<think></think><answer>{batch.samples[0]['answer']}</answer>"
    tf = teacher_forced_batch(module.processor, batch, targets)
    tok = module.processor.tokenizer
    n_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in targets]  # + EOS
    assert tf.response_mask.sum(-1).tolist() == n_tokens

    class NLL(L.Callback):
        values: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.values.append(float(outputs["loss"]))

    rec = NLL()
    trainer(max_steps=12, callbacks=[rec]).fit(module, datamodule=dm)
    assert len(rec.values) == 12
    assert sum(rec.values[-3:]) / 3 < 0.5 * sum(rec.values[:3]) / 3


def test_lora_checkpoint_holds_adapters_only_and_resumes(in_workspace, tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def lora_module():  # grpo: KL against the reference = the same model, adapters disabled
        return rl_module(policy=PolicyConfig(MODEL, lora=LoraSettings(r=4, alpha=8)), objective="grpo")

    module = lora_module()
    assert module.reference is not None
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=1)
    trainer(max_steps=1, callbacks=[ckpt], enable_checkpointing=True).fit(module, datamodule=data())
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    trainable = {f"policy.{n}" for n, p in module.policy.named_parameters() if p.requires_grad}
    assert set(state) == trainable and all("lora_" in k for k in state)
    assert module.last_metrics["policy/kl"] >= 0

    resumed = lora_module()
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=1)
    t = trainer(max_steps=2, callbacks=[ckpt], enable_checkpointing=True)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    probe = probe_training_steps(monkeypatch)
    t.fit(resumed, datamodule=data(), ckpt_path=str(tmp_path / "last.ckpt"), weights_only=True)
    assert t.global_step == 2
    # a fresh run reaches step 2 too: the resumed one ran step 1 only, from the saved adapters,
    # optimiser state and data position
    assert probe.steps == [1]
    assert set(probe.trainable) == set(state)
    assert_started_from(probe, saved)


@pytest.mark.parametrize("lora", [False, True])
def test_export_reloads_with_the_same_logits(in_workspace, tmp_path, lora):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from visgrpo.lightning.callbacks import export_hf

    policy = PolicyConfig(MODEL, lora=LoraSettings(r=4, alpha=8) if lora else None)
    module = rl_module(policy=policy)
    with torch.no_grad():  # move the adapters off zero so merging matters
        for p in module.policy.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    out = export_hf(module.policy, module.processor, tmp_path / "export", merged=True)
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    module.policy.eval()  # no LoRA dropout
    with torch.no_grad():
        a = module.policy(input_ids=ids).logits
        b = reloaded(input_ids=ids).logits
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


class HiddenStateLoss(CreditMethod):
    """An auxiliary loss on the loss forward's hidden states (not among the gradient layers)."""

    name = "hidden_loss"

    def loss_request(self, num_layers: int) -> SignalRequest:
        return SignalRequest(hidden_states=True)

    def auxiliary_loss(self, signals, normaliser=None):
        signals.require("hidden", method=self.name)
        value = signals.hidden.float().pow(2).mean()
        return 1e-6 * value, {"value": value.detach()}


def test_every_training_forward_requests_what_the_auxiliary_losses_need(in_workspace):
    module = rl_module(ppo_epochs=2, credit=[HiddenStateLoss()])
    assert module.loss_request.hidden_states and not module.fused
    t = trainer(max_steps=2)  # one RL step: the rollout-policy pass, then 2 loss passes
    t.fit(module, datamodule=data())
    assert float(module.last_metrics["hidden_loss/value"]) > 0
