"""Each credit method's target quantity (its ``target_metrics``, gathered by
visgrpo/credit/mechanism.py) on hand-checked batches.
"""

from __future__ import annotations

import math

import pytest
import torch

from visgrpo.credit.atrl import ATRLCredit
from visgrpo.credit.diagnostics import binned_slope
from visgrpo.credit.ease import EASECredit
from visgrpo.credit.mechanism import (
    layer_evidence_ratios,
    methods_with_targets,
    target_methods,
    target_metrics,
    target_request,
)
from visgrpo.credit.sayo import SAYOCredit
from visgrpo.credit.vgpo import VGPOCredit
from visgrpo.credit.vppo import VPPOCredit
from visgrpo.data.signals import Signals


def signals(T: int, N: int = 4, **kw) -> Signals:
    base = dict(response_mask=torch.ones(1, T, dtype=torch.bool), group_ids=torch.zeros(1, dtype=torch.long),
                rewards=torch.zeros(1), image_mask=torch.ones(1, N, dtype=torch.bool))
    base.update(kw)
    return Signals(**base)


def test_binned_slope_hand_values():
    # centres 0.1, 0.3, 0.5, 0.7, 0.9; y = 1 - x -> slope -1; a NaN bin is skipped.
    assert binned_slope(torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1])) == pytest.approx(-1.0)
    assert binned_slope(torch.tensor([0.9, float("nan"), 0.5, 0.3, 0.1])) == pytest.approx(-1.0)
    assert math.isnan(binned_slope(torch.tensor([0.9, float("nan")])))


def test_ease_target_at_its_layer_ungated():
    # Two tokens at EASE's layer (floor(2*3/3) = 2): uniform rows p = 1/4 and p = q.
    # q = [0.4, 0.2, 0.2, 0.2]: KL(uniform || q) = 0.25 (ln 0.625 + 3 ln 1.25) = 0.0498567,
    # KL(q || q) = 0 -> response mean 0.0249284 (reward 0: the gate is not applied).
    # Evidence = token 0 (share 1/4): on-evidence mass (0.25 + 0.4) / 2 -> ratio 1.3.
    q = torch.tensor([[0.4, 0.2, 0.2, 0.2]])
    at2 = torch.stack([torch.full((4,), 0.25), q[0]])[None]  # [1, 2, 4]
    at0 = torch.full((1, 2, 4), 0.25)  # layer 0: no preference -> ratio 1
    s = signals(2, image_attention={0: at0, 2: at2}, evidence_target=q,
                evidence_mask=torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    m = EASECredit()
    m.signal_request(3)
    out = m.target_metrics(s)
    kl = 0.25 * (math.log(0.625) + 3 * math.log(1.25)) / 2
    assert float(out["kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(out["evidence_ratio"]) == pytest.approx(1.3, rel=1e-6)
    assert out["layer"] == 2.0
    per_layer = layer_evidence_ratios(s)
    assert float(per_layer["evidence_ratio_L0"]) == pytest.approx(1.0)
    assert float(per_layer["evidence_ratio_L2"]) == pytest.approx(1.3)


def test_sayo_target_selected_tokens_region_ratio():
    # rho 0.5 of 4 tokens (same_position pairing) -> the 2 highest entropies: tokens 1, 2.
    # a_img = (0.7 + 0.8) / (2 * 4) = 0.1875, a_reg = (0.4 + 0.2) / (2 * 1) = 0.3 -> 1.6;
    # bonus tanh(ln 1.6) = (1.6 - 1/1.6) / (1.6 + 1/1.6) = 0.438202.
    attn = torch.tensor([[[0.9, 0.0, 0.0, 0.0], [0.4, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2], [0.0, 0.3, 0.3, 0.3]]])
    s = signals(4, image_attention={1: attn}, entropies=torch.tensor([[0.1, 0.9, 0.8, 0.2]]),
                evidence_mask=torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    m = SAYOCredit(rho=0.5, layer="last", entropy_attention_pairing="same_position")
    m.signal_request(2)
    out = m.target_metrics(s)
    assert float(out["region_ratio"]) == pytest.approx(1.6, rel=1e-6)
    assert float(out["reward"]) == pytest.approx(0.438202, abs=1e-6)


def test_vgpo_target_forgetting_curve_and_slope():
    # Own hidden states at cosines 1.0, 0.8, 0.6, 0.4, 0.2 with the image mean (1, 0);
    # 5 bins hold one token each -> the curve is the cosines, slope -1 per unit position.
    c = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2])
    hidden = torch.stack([c, (1 - c**2).sqrt()], -1)[None] * 3.0  # [1, 5, 2] (norm 3: cosine ignores it)
    s = signals(5, own_hidden=hidden, image_hidden_mean=torch.tensor([[2.0, 0.0]]))
    out = VGPOCredit().target_metrics(s, bins=5)
    assert [float(out[f"focus_pos{k:02d}"]) for k in range(5)] == pytest.approx(c.tolist(), abs=1e-6)
    assert out["focus_slope"] == pytest.approx(-1.0, abs=1e-6)
    assert float(out["focus_mean"]) == pytest.approx(0.6, abs=1e-6)


def test_atrl_target_spread_and_the_single_cluster_case():
    # c = [0.1, 0.2, 0.3, 0.4] (image mass of each row), mean 0.25; per-token weights
    # (clustering off) c / mean = [0.4 -> 0.5 (clamp), 0.8, 1.2, 1.6]: population std
    # sqrt(0.6875 / 4) = 0.414578; top 15% of 4 tokens = 1 anchor -> share 0.25.
    attn = torch.tensor([[[0.05, 0.05], [0.1, 0.1], [0.15, 0.15], [0.2, 0.2]]])
    s = signals(4, N=2, image_attention={0: attn}, response_attention={0: torch.eye(4)[None]})
    m = ATRLCredit(layers=0, clustering=False)
    m.signal_request(1)
    out = m.target_metrics(s)
    assert float(out["weight_std"]) == pytest.approx(math.sqrt(0.6875 / 4), rel=1e-5)
    assert float(out["anchor_share"]) == pytest.approx(0.25)
    # Shipped clustering, 4 tokens <= cluster_size 16: one cluster, every weight 1 -> std 0.
    m = ATRLCredit(layers=0)
    m.signal_request(1)
    out = m.target_metrics(s)
    assert float(out["clusters_per_response"]) == 1.0 and float(out["weight_std"]) == 0.0


def test_target_methods_keep_the_trained_instance_and_request_what_they_read():
    trained = EASECredit(lambda_attn=0.1, layer=1)
    methods = target_methods([trained], num_layers=4)
    assert [m.name for m in methods] == methods_with_targets() == ["atrl", "ease", "sayo", "vgpo", "vppo"]
    assert methods[1] is trained
    req = target_request(methods, 4)
    assert req.image_attention_layers == frozenset(range(4))  # every layer's evidence ratio
    assert req.grad_attention_layers == frozenset()  # measurements need no graph
    assert req.own_attention_layers == frozenset({3})  # SAYO's default: last layer, authors' pairing
    assert req.response_attention_layers == frozenset({1})  # AT-RL's middle third of 4 layers
    assert req.hidden_states and req.entropies
    assert req.masked_logp == methods[4].perturbation  # VPPO's patch blackening, one for every arm


def test_target_metrics_prefixes_and_skips_missing_signals():
    # No entropies / hidden states: SAYO and VGPO report nothing; EASE and AT-RL do.
    attn = torch.full((1, 3, 4), 0.25)
    s = signals(3, image_attention={k: attn for k in range(3)}, response_attention={1: torch.eye(3)[None]},
                evidence_mask=torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    out = target_metrics(target_methods([], num_layers=3), s)
    assert {"evidence_ratio_L0", "evidence_ratio_L1", "evidence_ratio_L2", "ease/evidence_ratio",
            "atrl/weight_std"} <= set(out)
    assert not any(k.startswith(("sayo/", "vgpo/")) for k in out)
    assert float(out["ease/evidence_ratio"]) == pytest.approx(1.0)


def test_vppo_target_visual_dependency_hand_values():
    # Token 0: masked prob 1/4 vs 1/2 -> d = -ln 2, S = 1/2 + ln 2 - 1; token 1: unchanged -> 0;
    # token 2: masked e^2 times likelier -> d = 2, S = e^2 - 3; token 3 is padding.
    logp = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.9]]))
    masked = logp + torch.tensor([[-math.log(2.0), 0.0, 2.0, 5.0]])
    mask = torch.tensor([[True, True, True, False]])
    s = signals(4, response_mask=mask, logp=logp, masked_logp=masked)
    dep = [0.5 + math.log(2.0) - 1.0, 0.0, math.exp(2.0) - 3.0]
    out = VPPOCredit(top_frac=0.4).target_metrics(s)  # keeps ceil(0.4 * 3) = 2 tokens: dep[2] and dep[0]
    assert float(out["dependency"]) == pytest.approx(sum(dep) / 3, rel=1e-5)
    assert float(out["dependency_top"]) == pytest.approx((dep[0] + dep[2]) / 2, rel=1e-5)
    assert VPPOCredit().target_metrics(signals(4, logp=logp)) == {}  # no masked-image forward: nothing
