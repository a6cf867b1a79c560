"""The shared-prefix forward (one prompt pass per group, rows continuing its KV cache) gives
every output of the plain forward and the same parameter gradients.
"""

from __future__ import annotations

import pytest
import torch

from visgrpo.attention.forward import policy_forward
from visgrpo.attention.shared_prefix import prefix_groups, shared_prefix_blocker
from visgrpo.data.signals import SignalRequest
from visgrpo.models.prefix import continuation_positions

ORDERS = {2: [0, 0, 1, 1], 3: [0, 1, 0, 1, 1, 0]}  # G = 2 contiguous; G = 3 interleaved


def test_prefix_groups_by_hand():
    first, row_group = prefix_groups(torch.tensor([9, 4, 9, 4, 7]))
    assert first.tolist() == [0, 1, 4]
    assert row_group.tolist() == [0, 1, 0, 1, 2]


def test_continuation_positions_by_hand():
    # row 0: 1 left pad, then 5 tokens; row 1: no pad, the last response token is padding
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    deltas = torch.tensor([[-3], [10]])
    pos = continuation_positions(mask, deltas, 3)
    assert pos.shape == (3, 2, 3)
    assert pos[0].tolist() == [[2 - 3, 3 - 3, 4 - 3], [3 + 10, 4 + 10, 0]]
    assert torch.equal(pos[0], pos[2])


def _request(n: int) -> SignalRequest:
    return SignalRequest(
        image_attention_layers=frozenset({n - 1, 0}),
        response_attention_layers=frozenset({n - 1}),
        grad_attention_layers=frozenset({1}),
        own_attention_layers=frozenset({0}),
        hidden_states=True,
    )


def _loss(out, n: int):
    valid = out.response_mask[:, :, None]
    return (out.logp.sum() + out.entropies.sum()
            + out.image_attention[1].pow(2).sum() * 10 + out.image_attention[n - 1].sum()
            + (out.hidden * valid).pow(2).mean() + (out.own_hidden * valid).pow(2).mean()
            + out.image_hidden_mean.pow(2).mean())


@pytest.mark.parametrize("G", [2, 3])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_shared_prefix_equals_plain_forward(family, G, tiny_models, grouped_batch):
    model = tiny_models[family][0]
    batch = grouped_batch(tiny_models[family][2], ORDERS[G])
    P = batch["prompt_len"]
    assert not batch["attention_mask"][:, :P].all()  # prompts of different lengths: left padding
    assert not batch["response_mask"].all()  # right-padded responses
    n = model.config.get_text_config().num_hidden_layers
    results, grads, decoder_rows = {}, {}, {}
    for share in (False, True):
        model.zero_grad(set_to_none=True)
        seen = []
        hook = model.model.language_model.register_forward_hook(
            lambda m, args, kw, out, seen=seen: seen.append(out.last_hidden_state.shape[:2]), with_kwargs=True)
        out = policy_forward(model, batch, _request(n), probe_chunk=3, share_prefix=share)
        hook.remove()
        decoder_rows[share] = seen
        _loss(out, n).backward()
        results[share] = out
        grads[share] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    B, L = batch["input_ids"].shape
    T = L - P
    assert decoder_rows[False] == [(B, L)]
    assert decoder_rows[True] == [(2, P - 1), (B, T + 1)]  # one prompt pass per group, then the rows
    a, b = results[False], results[True]
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.logp, a.logp, **close)
    torch.testing.assert_close(b.entropies, a.entropies, **close)
    torch.testing.assert_close(b.hidden, a.hidden, **close)  # every row, padding rows included
    torch.testing.assert_close(b.own_hidden, a.own_hidden, **close)
    torch.testing.assert_close(b.image_hidden_mean, a.image_hidden_mean, **close)
    for name in ("image_attention", "response_attention", "own_image_attention"):
        assert getattr(b, name).keys() == getattr(a, name).keys()
        for layer, want in getattr(a, name).items():
            torch.testing.assert_close(getattr(b, name)[layer], want, rtol=1e-5, atol=1e-6, msg=f"{name}[{layer}]")
    assert b.image_attention[1].requires_grad
    assert grads[False].keys() == grads[True].keys()
    assert any("visual" in k for k in grads[True])
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], rtol=1e-4, atol=1e-5, msg=k)


def test_masked_logp_shares_per_prompt_masks(tiny_models, grouped_batch):
    from visgrpo.data.perturb import Perturbation

    model = tiny_models["qwen2_vl"][0]
    batch = grouped_batch(tiny_models["qwen2_vl"][2], ORDERS[2])
    for per_response in (False, True):
        request = SignalRequest(masked_logp=Perturbation(per_response=per_response))
        with torch.no_grad():
            plain = policy_forward(model, batch, request, perturb_seed=5, share_prefix=False)
            shared = policy_forward(model, batch, request, perturb_seed=5)
        torch.testing.assert_close(shared.masked_logp, plain.masked_logp, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(shared.logp, plain.logp, rtol=1e-5, atol=1e-5)


def _blocker(model, batch, **changes):
    b = {**batch, **changes}
    counts = {k: b.get(k) for k in ("group_ids", "pixel_counts", "image_counts")}
    kwargs = {k: b.get(k) for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids")}
    return shared_prefix_blocker(model, kwargs, b["input_ids"], b["attention_mask"], b["prompt_len"], counts)


def test_fallbacks(tiny_models, grouped_batch):
    model = tiny_models["qwen2_vl"][0]
    batch = grouped_batch(tiny_models["qwen2_vl"][2], ORDERS[2])
    P = batch["prompt_len"]
    assert _blocker(model, batch) is None
    assert "group_ids" in _blocker(model, batch, group_ids=None)
    assert "one row per prompt group" in _blocker(model, batch, group_ids=torch.arange(4))
    assert "without images" in _blocker(model, batch, pixel_values=None)
    ids = batch["input_ids"].clone()
    ids[1, P - 2] += 1  # row 1's prompt differs from row 0's, its group's
    assert "different prompt tokens" in _blocker(model, batch, input_ids=ids)
    mm = batch["mm_token_type_ids"].clone()
    mm[:, P - 1] = 1
    assert "end with a text token" in _blocker(model, batch, mm_token_type_ids=mm)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        model.train()
        assert "gradient checkpointing" in _blocker(model, batch)
        with torch.no_grad():
            assert _blocker(model, batch) is None
    finally:
        model.gradient_checkpointing_disable()
        model.eval()
    # a fallback still computes the plain forward: rows of different prompts in one group
    out = policy_forward(model, {**batch, "input_ids": ids}, None)
    want = policy_forward(model, {**batch, "input_ids": ids}, None, share_prefix=False)
    torch.testing.assert_close(out.logp, want.logp)


def test_model_without_rope_deltas_is_refused(tiny_models, grouped_batch):
    model = tiny_models["qwen2_vl"][0]
    batch = grouped_batch(tiny_models["qwen2_vl"][2], ORDERS[2])
    saved = model.model.rope_deltas
    del model.model.rope_deltas
    try:
        assert "rope_deltas" in _blocker(model, batch)
    finally:
        model.model.rope_deltas = saved


def test_peft_lora_gradients_match(tiny_model_dirs, grouped_batch, tiny_models):
    from visgrpo.models.loading import PolicyConfig, load_policy
    from visgrpo.models.lora import LoraSettings

    model, _ = load_policy(PolicyConfig(tiny_model_dirs["qwen2_5_vl"], lora=LoraSettings(r=4, dropout=0.0)))
    with torch.no_grad():  # a non-zero adapter
        gen = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    batch = grouped_batch(tiny_models["qwen2_5_vl"][2], ORDERS[3])
    n = model.config.get_text_config().num_hidden_layers
    assert _blocker(model, batch) is None
    grads = {}
    for share in (False, True):
        model.zero_grad(set_to_none=True)
        _loss(policy_forward(model, batch, _request(n), share_prefix=share), n).backward()
        grads[share] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys() and any("lora_A" in k for k in grads[True])
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], rtol=1e-4, atol=1e-5, msg=k)
