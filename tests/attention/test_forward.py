"""policy_forward: one forward gives the same log-probs / entropies / hidden / attention as
separate reference computations on the full model outputs.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from visgrpo.attention.forward import policy_forward
from visgrpo.attention.hidden import visual_focus
from visgrpo.attention.locate import locate_image_tokens
from visgrpo.data.signals import Signals

REQ = SimpleNamespace(
    image_attention_layers=[-1],
    response_attention_layers=[1],
    grad_attention_layers=[],
    hidden_states=True,
    entropies=True,
)


def _reference(model, batch, temperature):
    """Full-sequence logits / hidden states / eager-free attention via output_hidden_states."""
    inputs = {k: v for k, v in batch.items() if k not in ("response_mask", "prompt_len")}
    out = model(**inputs, output_hidden_states=True)
    P, T = batch["prompt_len"], batch["response_mask"].shape[1]
    logits = out.logits[:, P - 1 : P - 1 + T] / temperature  # [B, T, V]
    lp = logits.log_softmax(-1)
    tgt = batch["input_ids"][:, P:]
    logp = lp.gather(-1, tgt[..., None])[..., 0] * batch["response_mask"]
    ent = -(lp.exp() * lp).sum(-1) * batch["response_mask"]
    return logp, ent, out.hidden_states[-1]


def test_policy_forward_matches_full_model(family, tiny_models):
    sdpa, eager, batch = tiny_models[family]
    with torch.no_grad():
        res = policy_forward(sdpa, batch, REQ, temperature=0.7, logprob_chunk=3, probe_chunk=2)
        logp, ent, last = _reference(sdpa, batch, 0.7)
        inputs = {k: v for k, v in batch.items() if k not in ("response_mask", "prompt_len")}
        att = eager(**inputs, output_attentions=True).attentions
    P, T = batch["prompt_len"], batch["response_mask"].shape[1]
    torch.testing.assert_close(res.logp, logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(res.entropies, ent, atol=1e-5, rtol=0)
    assert bool((res.logp[1, T - 2 :] == 0).all())  # padded response tokens
    torch.testing.assert_close(res.hidden, last[:, P - 1 : P - 1 + T], atol=1e-6, rtol=0)
    cfg = sdpa.config
    tok = locate_image_tokens(batch["input_ids"], batch["attention_mask"], cfg.image_token_id,
                              batch["image_grid_thw"], cfg.vision_config.spatial_merge_size)
    assert isinstance(res, Signals) and torch.equal(res.image_mask, tok.mask)
    assert res.rewards is None  # filled in by the RL step
    mean = torch.stack([last[b, tok.positions[b][tok.mask[b]]].mean(0) for b in range(2)])
    torch.testing.assert_close(res.image_hidden_mean, mean, atol=1e-6, rtol=0)
    # attention keyed as requested (-1) and equal to eager's last layer at the response rows
    rows = P - 1 + torch.arange(T)
    a = att[-1].mean(1)  # [B, L, L]
    expect = torch.stack([a[b][rows][:, tok.positions[b]] for b in range(2)])
    expect = expect * batch["response_mask"][:, :, None] * tok.mask[:, None, :]
    assert set(res.image_attention) == {-1} and set(res.response_attention) == {1}
    torch.testing.assert_close(res.image_attention[-1], expect, atol=1e-5, rtol=0)
    a1 = att[1].mean(1)
    r_expect = torch.stack([a1[b][rows][:, rows] for b in range(2)])
    rm = batch["response_mask"]
    torch.testing.assert_close(
        res.response_attention[1], r_expect * rm[:, :, None] * rm[:, None, :], atol=1e-5, rtol=0
    )
    # VGPO focus from these signals is a cosine in [-1, 1]
    w = visual_focus(res.hidden, res.image_hidden_mean)
    assert w.shape == (2, T) and bool((w.abs() <= 1 + 1e-6).all())


def test_policy_forward_without_request_and_bad_layout(tiny_models):
    sdpa, _, batch = tiny_models["qwen2_vl"]
    with torch.no_grad():
        res = policy_forward(sdpa, batch)
        logp, _, _ = _reference(sdpa, batch, 1.0)
    torch.testing.assert_close(res.logp, logp, atol=1e-5, rtol=0)
    assert res.hidden is None and res.image_attention == {}
    bad = dict(batch, prompt_len=batch["prompt_len"] - 1)
    with pytest.raises(ValueError, match="prompt_len"):
        policy_forward(sdpa, bad)


def test_policy_forward_derives_mm_token_type_ids(tiny_models):
    """Without mm_token_type_ids (3D rope needs them) the result is unchanged."""
    sdpa, _, batch = tiny_models["qwen2_5_vl"]
    stripped = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        a = policy_forward(sdpa, batch).logp
        b = policy_forward(sdpa, stripped).logp
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.slow
def test_policy_forward_with_lora_and_grad(tiny_model_dirs, rl_batch):
    """A peft LoRA model: gradients of logp and of grad-mode attention reach the adapters."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    path = tiny_model_dirs["qwen3_vl"]
    base = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        base,
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "k_proj"], init_lora_weights=False),
    )
    batch = rl_batch(path)
    req = SimpleNamespace(
        image_attention_layers=[2],
        response_attention_layers=[],
        grad_attention_layers=[2],
        hidden_states=False,
        entropies=True,
    )
    res = policy_forward(model, batch, req)
    assert res.image_attention[2].requires_grad
    loss = res.logp.sum() + res.image_attention[2].sum()
    loss.backward()
    layer2 = model.get_base_model().model.language_model.layers[2].self_attn
    assert layer2.q_proj.lora_A["default"].weight.grad.abs().max() > 0
    with torch.no_grad():
        plain = policy_forward(model, batch).logp
    torch.testing.assert_close(res.logp.detach(), plain, atol=1e-5, rtol=0)


def test_policy_forward_under_gradient_checkpointing(tiny_model_dirs, rl_batch):
    """Non-reentrant checkpointing recomputes layers after the probe context has exited:
    attention-loss gradients must equal those without checkpointing.
    """
    from transformers import AutoModelForImageTextToText

    path = tiny_model_dirs["qwen2_5_vl"]
    batch = rl_batch(path)
    req = SimpleNamespace(
        image_attention_layers=[1],
        response_attention_layers=[1],
        grad_attention_layers=[1],
        hidden_states=False,
        entropies=True,
    )
    grads = []
    for ckpt in (False, True):
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        if ckpt:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.train()
        res = policy_forward(model, batch, req)
        W = torch.randn(res.image_attention[1].shape, generator=torch.Generator().manual_seed(0))
        (res.logp.sum() + (res.image_attention[1] * W).sum()).backward()
        lay = model.model.language_model.layers
        grads.append([lay[1].self_attn.q_proj.weight.grad, lay[0].self_attn.k_proj.weight.grad])
    for a, b in zip(*grads, strict=True):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_policy_forward_accepts_rollout_batch_objects(tiny_models):
    """An object with attributes (RolloutBatch-style, ``prompt_length``) works like the dict."""
    sdpa, _, batch = tiny_models["qwen2_vl"]
    obj = SimpleNamespace(**{k: v for k, v in batch.items() if k != "prompt_len"})
    obj.prompt_length = batch["prompt_len"]
    with torch.no_grad():
        a = policy_forward(sdpa, batch).logp
        b = policy_forward(sdpa, obj).logp
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_signals_carry_the_graph_until_detached(tiny_models):
    """policy_forward's Signals keep autograd on every computed tensor; ``detached()`` is a
    copy with the same values and no graph, leaving the original as it was.
    """
    sdpa, _, batch = tiny_models["qwen2_5_vl"]
    req = SimpleNamespace(image_attention_layers=[-1], response_attention_layers=[1], grad_attention_layers=[1],
                          hidden_states=True, own_attention_layers=[1])
    res = policy_forward(sdpa, {**batch, "group_ids": torch.tensor([0, 0])}, req)
    graph = {"logp": res.logp, "entropies": res.entropies, "hidden": res.hidden, "own_hidden": res.own_hidden,
             "image_hidden_mean": res.image_hidden_mean, "image_attention[1]": res.image_attention[1],
             "own_image_attention[1]": res.own_image_attention[1]}
    assert all(t.requires_grad for t in graph.values()), [k for k, t in graph.items() if not t.requires_grad]
    assert torch.equal(res.group_ids, torch.tensor([0, 0]))
    const = res.detached()
    assert const is not res and isinstance(const, Signals)
    for name, value in vars(const).items():
        maps = value.values() if isinstance(value, dict) else [value]
        assert not any(isinstance(t, torch.Tensor) and t.requires_grad for t in maps), name
    assert set(const.image_attention) == {-1, 1} and set(const.response_attention) == {1}
    for k in (-1, 1):
        assert torch.equal(const.image_attention[k], res.image_attention[k].detach())
    assert torch.equal(const.logp, res.logp.detach()) and torch.equal(const.hidden, res.hidden.detach())
    assert torch.equal(const.response_mask, res.response_mask) and const.rewards is None
    assert res.logp.requires_grad and res.image_attention[1].requires_grad  # the original keeps its graph
