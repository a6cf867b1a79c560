"""Attention probe vs transformers' eager attention (output_attentions=True) on tiny models."""

from __future__ import annotations

import pytest
import torch

from visgrpo.attention.locate import locate_image_tokens
from visgrpo.attention.probe import PROBE_NAME, AttentionProbe, probe_attention


def _layout(model, batch):
    """Rows = response rows P-1..P+T-2; columns = the located image tokens."""
    P, T = batch["prompt_len"], batch["response_mask"].shape[1]
    tokens = locate_image_tokens(
        batch["input_ids"],
        batch["attention_mask"],
        model.config.image_token_id,
        batch["image_grid_thw"],
        model.config.vision_config.spatial_merge_size,
    )
    rows = (P - 1 + torch.arange(T)).expand(2, T)  # [B, T]
    return rows, tokens


def _model_inputs(batch):
    skip = ("response_mask", "prompt_len")
    return {k: v for k, v in batch.items() if k not in skip}


def _eager_block(attn, rows, cols, per_head):
    """Attn [B, H, L, L] -> [B, (H,) T, C] at (rows, cols) (reference by plain indexing)."""
    a = attn if per_head else attn.mean(1, keepdim=True)
    out = torch.stack([a[b][:, rows[b]][:, :, cols[b]] for b in range(a.shape[0])])
    return out if per_head else out[:, 0]


@pytest.mark.parametrize("chunk,per_head", [(3, False), (2, True)])
def test_probe_equals_eager_attention(family, tiny_models, chunk, per_head):
    sdpa, eager, batch = tiny_models[family]
    rows, tok = _layout(sdpa, batch)
    qmask = batch["response_mask"]
    # Two images in sample 0, one in sample 1, different prompt lengths (left padding).
    assert tok.images_per_sample.tolist() == [2, 1]
    assert (
        int(batch["attention_mask"][:, : batch["prompt_len"]].sum(1).ne(batch["prompt_len"]).sum())
        == 1
    )
    inputs = _model_inputs(batch)
    with torch.no_grad():
        plain = sdpa(**inputs).logits
        with AttentionProbe(
            sdpa,
            [0, 2, -1],
            rows,
            tok.positions,
            query_mask=qmask,
            image_mask=tok.mask,
            response_columns=[2],
            chunk_size=chunk,
            per_head=per_head,
        ) as probe:
            probed = sdpa(**inputs).logits
        ref = eager(**inputs, output_attentions=True)
    # Layer outputs unchanged by the probe (same SDPA kernel).
    torch.testing.assert_close(probed, plain, atol=1e-5, rtol=0)
    valid = qmask[:, :, None] & tok.mask[:, None, :]  # [B, T, N]
    if per_head:
        valid = valid[:, None]
    assert set(probe.image_attention) == {0, 2, 3}
    for layer in (0, 2, 3):
        expect = _eager_block(ref.attentions[layer], rows, tok.positions, per_head) * valid
        got = probe.image_attention[layer]
        assert got.shape == expect.shape
        torch.testing.assert_close(got, expect, atol=1e-5, rtol=0)
        assert not got.requires_grad
    rvalid = qmask[:, :, None] & qmask[:, None, :]
    if per_head:
        rvalid = rvalid[:, None]
    expect = _eager_block(ref.attentions[2], rows, rows, per_head) * rvalid
    torch.testing.assert_close(probe.response_attention[2], expect, atol=1e-5, rtol=0)
    assert set(probe.response_attention) == {2}
    # The probe really sees the image: a visible share of the row's mass, and < 1.
    mass = probe.image_attention[3].sum(-1)  # [B, (H,) T]
    mass = mass.mean(1) if per_head else mass
    assert bool((mass[qmask] > 0).all() and (mass <= 1 + 1e-6).all())


def test_probe_installs_on_text_model_only(tiny_models):
    sdpa, _, batch = tiny_models["qwen2_5_vl"]
    rows, tok = _layout(sdpa, batch)
    with AttentionProbe(sdpa, [1], rows, tok.positions):
        assert sdpa.config.text_config._attn_implementation == PROBE_NAME
        assert sdpa.config.vision_config._attn_implementation == "sdpa"
    assert sdpa.config.text_config._attn_implementation == "sdpa"
    assert not any(hasattr(m, "_visgrpo_probe") for m in sdpa.modules())


def test_probe_argument_errors(tiny_models):
    sdpa, _, batch = tiny_models["qwen2_5_vl"]
    rows, tok = _layout(sdpa, batch)
    with pytest.raises(ValueError, match="out of range for 4 decoder layers"):
        AttentionProbe(sdpa, [4], rows, tok.positions)
    with pytest.raises(ValueError, match="among the probed layers"):
        AttentionProbe(sdpa, [1], rows, tok.positions, grad_layers=[2])


def test_probe_attention_causal_without_mask_and_gqa():
    """Mask None means plain causal; GQA groups query heads per key head (kv head h // 2)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 7, 3, generator=g)
    k = torch.randn(1, 2, 7, 3, generator=g)
    rows, cols = torch.tensor([[2, 6, 4]]), torch.tensor([[0, 5, 3]])
    got = probe_attention(q, k, None, rows, cols, 0.5, chunk_size=2)  # [1, 4, 3, 3]
    kk = k.repeat_interleave(2, dim=1)  # [1, 4, 7, 3]
    s = (q @ kk.transpose(-1, -2)) * 0.5
    s = s.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    p = s.softmax(-1)[:, :, rows[0]][:, :, :, cols[0]]
    torch.testing.assert_close(got, p, atol=1e-6, rtol=0)
    assert float(got[0, 0, 0, 1]) == 0.0  # row 2 cannot see key 5


def test_probe_gradient_matches_eager(family, tiny_models):
    """d/dtheta sum(attn * W) through the probe equals the same through eager attention."""
    sdpa, eager, batch = tiny_models[family]
    rows, tok = _layout(sdpa, batch)
    qmask = batch["response_mask"]
    inputs = _model_inputs(batch)
    W = torch.randn(
        2, rows.shape[1], tok.positions.shape[1], generator=torch.Generator().manual_seed(1)
    )  # [B, T, N]
    valid = (qmask[:, :, None] & tok.mask[:, None, :]).float()

    def grads(model, loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        lay = model.model.language_model.layers
        return {
            name: p.grad.clone()
            for name, p in [
                ("q1", lay[1].self_attn.q_proj.weight),
                ("k1", lay[1].self_attn.k_proj.weight),
                ("q0", lay[0].self_attn.q_proj.weight),
                ("v0", lay[0].self_attn.v_proj.weight),
            ]
        }

    with AttentionProbe(
        sdpa,
        [1],
        rows,
        tok.positions,
        query_mask=qmask,
        image_mask=tok.mask,
        grad_layers=[1],
        chunk_size=3,
    ) as probe:
        sdpa(**inputs)
    attn = probe.image_attention[1]  # [B, T, N]
    assert attn.requires_grad
    g_probe = grads(sdpa, (attn * W).sum())

    ref = eager(**inputs, output_attentions=True)
    eattn = _eager_block(ref.attentions[1], rows, tok.positions, False) * valid
    g_eager = grads(eager, (eattn * W).sum())
    for name in g_probe:
        assert g_probe[name].abs().max() > 1e-6, name  # gradient reaches q_proj / k_proj
        torch.testing.assert_close(g_probe[name], g_eager[name], atol=1e-5, rtol=1e-4)
    sdpa.zero_grad(set_to_none=True)
    eager.zero_grad(set_to_none=True)
