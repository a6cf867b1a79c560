"""Diagnostics: evidence attention ratio, visual-forgetting curve, anchor share."""

from __future__ import annotations

import math

import pytest
import torch

from visgrpo.credit.diagnostics import (
    anchor_share,
    batch_diagnostics,
    evidence_attention_ratio,
    visual_mass,
    visual_mass_by_position,
)
from visgrpo.data.signals import Signals


def test_evidence_ratio_hand_values():
    # Response 0: evidence = token 0 (1 of 4 image tokens, share 0.25); attention
    # [0.2, 0.1, 0.1, 0.1] renormalises to [0.4, 0.2, 0.2, 0.2] -> ratio 0.4 / 0.25 = 1.6.
    # Response 1: no evidence -> undefined (NaN), excluded from the batch mean.
    attn = torch.tensor([[[0.2, 0.1, 0.1, 0.1]], [[0.25, 0.25, 0.25, 0.25]]])
    ev = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    ratio, m = evidence_attention_ratio(attn, torch.ones(2, 4, dtype=torch.bool), ev,
                                        torch.ones(2, 1, dtype=torch.bool))
    assert ratio[0].item() == pytest.approx(1.6) and math.isnan(ratio[1].item())
    assert float(m["evidence_ratio"]) == pytest.approx(1.6) and m["evidence_ratio_undefined"] == 1.0
    # Half coverage on token 1 too: share (1 + 0.5) / 4 = 0.375, mass 0.4 + 0.5 * 0.2 = 0.5
    # -> ratio 0.5 / 0.375 = 4 / 3.
    ev2 = torch.tensor([[1.0, 0.5, 0.0, 0.0]])
    ratio2, _ = evidence_attention_ratio(attn[:1], torch.ones(1, 4, dtype=torch.bool), ev2,
                                         torch.ones(1, 1, dtype=torch.bool))
    assert ratio2[0].item() == pytest.approx(4 / 3)


def test_forgetting_curve_bins_relative_positions():
    # Response 0: 10 tokens with mass 1.0, 0.9, ..., 0.1; response 1: 5 tokens of mass 0.5
    # (+ padding). 5 bins: response 0 puts 2 tokens per bin, response 1 one per bin.
    # Bin 0 = mean(1.0, 0.9, 0.5) = 0.8; bin 4 = mean(0.2, 0.1, 0.5) = 0.26667.
    mass = torch.zeros(2, 10)
    mass[0] = torch.linspace(1.0, 0.1, 10)
    mass[1, :5] = 0.5
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0] = True
    mask[1, :5] = True
    curve, counts = visual_mass_by_position(mass, mask, bins=5)
    assert counts.tolist() == [3.0] * 5
    assert curve.tolist() == pytest.approx([0.8, 0.66667, 0.53333, 0.4, 0.26667], abs=1e-4)


def test_anchor_share_hand_values():
    # mass [1, 1, 1, 1, 6]: mean 2, tokens >= 2 * 2 = 4: one of 5 -> 0.2;
    # top ceil(0.15 * 5) = 1 token carries 6 / 10 of the mass.
    m = anchor_share(torch.tensor([[1.0, 1.0, 1.0, 1.0, 6.0]]), torch.ones(1, 5, dtype=torch.bool))
    assert float(m["anchor_share"]) == pytest.approx(0.2) and float(m["top15_mass_share"]) == pytest.approx(0.6)


def test_batch_diagnostics_keys_and_values():
    attn = torch.tensor([[[0.2, 0.1, 0.1, 0.1], [0.1, 0.0, 0.0, 0.0]]])  # [1, 2, 4]
    sig = Signals(torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, dtype=torch.long), torch.ones(1),
                  torch.ones(1, 4, dtype=torch.bool), image_attention={5: attn},
                  evidence_mask=torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    d = batch_diagnostics(sig, layer=5, bins=2)
    # visual mass per row: 0.5 and 0.1 -> mean 0.3; forgetting = 0.1 / 0.5 = 0.2.
    assert float(d["diag/visual_mass"]) == pytest.approx(0.3)
    assert float(d["diag/visual_forgetting"]) == pytest.approx(0.2)
    assert d["diag/visual_mass_by_position"].tolist() == pytest.approx([0.5, 0.1])
    # evidence ratio: row 0: 0.4 / 0.25 = 1.6; row 1: 1.0 / 0.25 = 4 -> mean mass 0.7 / 0.25 = 2.8.
    assert float(d["diag/evidence_ratio"]) == pytest.approx(2.8)
    assert batch_diagnostics(sig, layer=3) == {}  # layer not probed: nothing
    sig.evidence_mask = None
    assert "diag/evidence_ratio" not in batch_diagnostics(sig)
    assert torch.equal(visual_mass(attn, torch.tensor([[True, True, False, False]]),
                                   torch.ones(1, 2, dtype=torch.bool)),
                       torch.tensor([[0.3, 0.1]]))
