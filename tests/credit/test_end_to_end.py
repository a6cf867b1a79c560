"""All four methods on the signals of a real (tiny, random) Qwen2.5-VL forward pass."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tests.attention import conftest as _conf
from visgrpo.credit import build_credit
from visgrpo.credit.diagnostics import batch_diagnostics


@pytest.mark.slow
def test_composed_methods_on_policy_forward_signals(tiny_model_dirs):
    from visgrpo.attention.forward import policy_forward

    path = tiny_model_dirs["qwen2_5_vl"]
    model = _conf._load(path, "sdpa")
    batch = _conf.make_rl_batch(path, T=40)  # 40 > cluster_size: METIS runs on response 0
    L = model.config.get_text_config().num_hidden_layers
    credit = build_credit(["sayo", "vgpo", "atrl", "ease"])
    req = credit.signal_request(L)
    out = policy_forward(model, batch, req)
    n = out.image_mask.shape[1]
    target = torch.rand(2, n).masked_fill(~out.image_mask, 0)
    target = target / target.sum(-1, keepdim=True)
    extra = {
        "group_ids": torch.tensor([0, 0]),
        "rewards": torch.tensor([1.0, 0.0]),
        "evidence_mask": (target > target.mean()).float(),
        "evidence_target": target,
    }
    sig = dataclasses.replace(out, **extra).detached()
    r, m1 = credit.extra_rewards(sig)
    adv, m2 = credit.token_advantages(torch.ones(2, 40), sig)
    assert r.shape == (2,) and torch.isfinite(r).all() and bool((r.abs() < 1).all())
    assert torch.isfinite(adv).all() and not torch.equal(adv, torch.ones(2, 40))
    assert float(m2["atrl/clusters_per_response"]) > 1
    loss, m3 = credit.auxiliary_loss(dataclasses.replace(out, **extra))
    assert loss.requires_grad and math.isfinite(loss.item()) and float(m3["ease/gated"]) == 1.0
    loss.backward()
    layer = next(iter(req.grad_attention_layers))
    q_grad = model.model.language_model.layers[layer].self_attn.q_proj.weight.grad
    assert q_grad is not None and q_grad.abs().sum() > 0
    d = batch_diagnostics(sig, layer=max(req.image_attention_layers))
    assert 0 < float(d["diag/visual_mass"]) <= 1 and "diag/evidence_ratio" in d
