"""SAYO (arXiv 2602.08241): region attention reward on hand-built attention maps."""

from __future__ import annotations

import math

import pytest
import torch

from visgrpo.credit import SAYOCredit
from visgrpo.credit.sayo import sayo_attention_reward
from visgrpo.data.signals import Signals


def _tanh_log(x: float) -> float:
    # tanh(log x) = (x^2 - 1) / (x^2 + 1)
    return (x * x - 1) / (x * x + 1)


def test_known_region_share():
    # One row, 4 image tokens, region = token 0 gets 0.4, the others 0.2 each:
    # a_reg = 0.4, a_img = (0.4 + 3 * 0.2) / 4 = 0.25 -> r = tanh(log 1.6) = 1.56 / 3.56.
    attn = torch.tensor([[[0.4, 0.2, 0.2, 0.2]]])
    region = torch.tensor([[True, False, False, False]])
    r, m = sayo_attention_reward(attn, torch.ones(1, 4, dtype=torch.bool), region, torch.ones(1, 1),
                                 torch.ones(1, 1, dtype=torch.bool))
    assert float(r[0]) == pytest.approx(1.56 / 3.56, abs=1e-6)
    assert float(r[0]) == pytest.approx(_tanh_log(1.6), abs=1e-6)
    assert float(m["a_img"]) == pytest.approx(0.25) and float(m["a_reg"]) == pytest.approx(0.4)


def test_region_below_average_is_negative_and_invalid_image_slots_are_ignored():
    # 6 slots, the last 2 are padding (huge attention there must not count).
    # Valid: region 0.1, others 0.3 -> a_img = 1.0 / 4 = 0.25, r = tanh(log 0.4) = -0.84 / 1.16.
    attn = torch.tensor([[[0.1, 0.3, 0.3, 0.3, 5.0, 5.0]]])
    img = torch.tensor([[True, True, True, True, False, False]])
    region = torch.tensor([[True, False, False, False, True, False]])  # slot 4 is padding
    r, _ = sayo_attention_reward(attn, img, region, torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool))
    assert float(r[0]) == pytest.approx(-0.84 / 1.16, abs=1e-6)


def test_entropy_selection_picks_the_top_30_percent_of_real_tokens_only():
    # 10 real tokens + 3 padding rows with the largest entropies. rho = 0.3 -> k = 3:
    # real tokens 2, 5, 7 have the highest entropies. Their rows give region 0.4 / others
    # 0.2 (r = tanh(log 1.6)); all other real rows give region 0.1 / others 0.3; padding
    # rows give region 1.0. Only the exact selection yields tanh(log 1.6).
    T = 13
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[0, :10] = True
    ent = torch.tensor([[0.1, 0.2, 0.9, 0.3, 0.1, 0.8, 0.2, 0.7, 0.3, 0.4, 9.0, 9.0, 9.0]])
    attn = torch.tensor([0.1, 0.3, 0.3, 0.3]).repeat(1, T, 1)
    attn[0, [2, 5, 7]] = torch.tensor([0.4, 0.2, 0.2, 0.2])
    attn[0, 10:] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    region = torch.tensor([[True, False, False, False]])
    img = torch.ones(1, 4, dtype=torch.bool)
    r, m = sayo_attention_reward(attn, img, region, ent, mask, rho=0.3, pairing="same_position", rounding="ceil")
    assert float(r[0]) == pytest.approx(_tanh_log(1.6), abs=1e-6)
    assert float(m["selected_tokens"]) == 3.0  # ceil(0.3 * 10) = 3 (not 4: float tolerance)
    # Authors' defaults: the last real token (9) has no pair, m = 9 candidates and
    # max(1, floor(0.3 * 9)) = 2 tokens (2 and 5) are selected: same ratio here.
    r, m = sayo_attention_reward(attn, img, region, ent, mask, rho=0.3)
    assert float(r[0]) == pytest.approx(_tanh_log(1.6), abs=1e-6)
    assert float(m["selected_tokens"]) == 2.0
    # Token 9 with the highest real entropy is never selected under the authors' pairing.
    ent[0, 9] = 5.0
    attn[0, 9] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    r, _ = sayo_attention_reward(attn, img, region, ent, mask, rho=0.3)
    assert float(r[0]) == pytest.approx(_tanh_log(1.6), abs=1e-6)
    r, _ = sayo_attention_reward(attn, img, region, ent, mask, rho=0.3, pairing="same_position")
    assert float(r[0]) != pytest.approx(_tanh_log(1.6), abs=1e-3)


def test_no_region_gives_zero_and_is_counted():
    attn = torch.full((2, 2, 3), 1 / 3)
    region = torch.tensor([[False, False, False], [True, False, False]])
    r, m = sayo_attention_reward(attn, torch.ones(2, 3, dtype=torch.bool), region, torch.ones(2, 2),
                                 torch.ones(2, 2, dtype=torch.bool))
    assert float(r[0]) == 0.0
    assert float(r[1]) == pytest.approx(0.0, abs=1e-6)  # uniform: a_reg = a_img -> tanh(0)
    assert m["no_region"] == 1.0


def test_credit_class_uses_last_layer_evidence_threshold_and_weight():
    method = SAYOCredit(reward_weight=0.5, region_threshold=0.3, entropy_attention_pairing="same_position")
    req = method.signal_request(num_layers=4)
    assert req.image_attention_layers == frozenset({3}) and req.entropies
    assert SAYOCredit().signal_request(4).own_attention_layers == frozenset({3})
    attn = torch.tensor([[[0.4, 0.2, 0.2, 0.2]]])
    # Coverage 0.2 on token 1 is below the threshold: the region is token 0 only.
    sig = Signals(
        response_mask=torch.ones(1, 1, dtype=torch.bool),
        group_ids=torch.zeros(1, dtype=torch.long),
        rewards=torch.zeros(1),
        image_mask=torch.ones(1, 4, dtype=torch.bool),
        entropies=torch.ones(1, 1),
        image_attention={3: attn, 0: torch.zeros(1, 1, 4)},
        evidence_mask=torch.tensor([[1.0, 0.2, 0.0, 0.0]]),
    )
    r, m = method.extra_rewards(sig)
    assert float(r[0]) == pytest.approx(0.5 * _tanh_log(1.6), abs=1e-6)
    assert float(m["group_spread"]) == 0.0  # one response in its group
    # Region labels are used when there is no evidence mask.
    sig.evidence_mask, sig.region_labels = None, torch.tensor([[0, 0, 0, 2]])
    r, _ = method.extra_rewards(sig)
    # region = token 3 (0.2): a_reg / a_img = 0.8 -> tanh(log 0.8) = -0.36 / 1.64
    assert float(r[0]) == pytest.approx(0.5 * _tanh_log(0.8), abs=1e-6)
    sig.region_labels = None
    with pytest.raises(ValueError, match="evidence_mask or Signals.region_labels"):
        method.extra_rewards(sig)
    assert math.isfinite(float(m["reward"]))


def test_missing_layer_is_a_clear_error():
    method = SAYOCredit()
    method.signal_request(num_layers=4)
    sig = Signals(torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, dtype=torch.long), torch.zeros(1),
                  torch.ones(1, 2, dtype=torch.bool), entropies=torch.ones(1, 1),
                  image_attention={3: torch.zeros(1, 1, 2)}, region_labels=torch.tensor([[1, 0]]))
    with pytest.raises(KeyError, match="own_image_attention has no layer 3"):
        method.extra_rewards(sig)


def test_unknown_options_are_clear_errors():
    with pytest.raises(ValueError, match="entropy_attention_pairing"):
        SAYOCredit(entropy_attention_pairing="next")
    with pytest.raises(ValueError, match="selection_rounding"):
        SAYOCredit(selection_rounding="round")


def test_within_group_std_by_hand():
    from visgrpo.credit.sayo import within_group_std

    # groups {0: [1, 3], 1: [2, 2, 2]}: population stds 1 and 0 -> mean 0.5
    x = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0])
    g = torch.tensor([7, 7, 4, 4, 4])
    assert within_group_std(x, g).item() == pytest.approx(0.5)
    # interleaved rows: group 0 = [0, 4] std 2, group 1 = [1, 1] std 0 -> 1
    assert within_group_std(torch.tensor([0.0, 1.0, 4.0, 1.0]), torch.tensor([0, 1, 0, 1])).item() == pytest.approx(1.0)
