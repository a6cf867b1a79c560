"""Policy loading, LoRA, QLoRA and the reference policy on tiny real-architecture models."""

from __future__ import annotations

import pytest
import torch

from visgrpo.models.loading import PolicyConfig, count_parameters, load_policy
from visgrpo.models.lora import LoraSettings, target_regex
from visgrpo.models.reference import ReferencePolicy


def _batch(model, processor, seed=0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    img = Image.fromarray((torch.rand(84, 112, 3, generator=g) * 255).byte().numpy())
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = processor(text=[prompt + "red"], images=[img], return_tensors="pt")
    return inputs


def _token_logp(model, inputs):
    logits = model(**inputs).logits[:, :-1].float()  # [1, L-1, V]
    labels = inputs["input_ids"][:, 1:]
    return torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)  # [1, L-1]


def _lm_step(model, inputs, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    loss = -_token_logp(model, inputs).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()


def test_lora_step_changes_only_adapters(tiny_model_dirs):
    cfg = PolicyConfig(tiny_model_dirs["qwen2_5_vl"], lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    model, processor = load_policy(cfg)
    trainable, total = count_parameters(model)
    assert 0 < trainable < total
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    assert not any("visual" in n for n in names)  # vision tower excluded by default
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # LoRA B starts at zero, so one step moves B only; a second moves A too.
    inputs = _batch(model, processor)
    _lm_step(model, inputs)
    _lm_step(model, inputs)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "the step changed nothing"
    assert changed <= names
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


def test_lora_include_vision_and_regex():
    regex = target_regex(LoraSettings(target_modules=["q_proj"], include_vision=True))
    import re

    assert re.fullmatch(regex, "base_model.model.model.language_model.layers.3.self_attn.q_proj")
    assert re.fullmatch(regex, "model.visual.blocks.0.attn.q_proj")
    assert not re.fullmatch(regex, "model.language_model.layers.3.self_attn.k_proj")
    text_only = target_regex(LoraSettings())
    assert not re.fullmatch(text_only, "model.visual.blocks.0.mlp.gate_proj")
    assert re.fullmatch(text_only, "model.language_model.layers.0.mlp.gate_proj")


def test_reference_equals_base_with_adapters_disabled(tiny_model_dirs):
    from transformers import AutoModelForImageTextToText

    path = tiny_model_dirs["qwen2_vl"]
    model, processor = load_policy(PolicyConfig(path, lora=LoraSettings(r=4, dropout=0.0)))
    inputs = _batch(model, processor, seed=1)
    _lm_step(model, inputs, lr=0.5)
    _lm_step(model, inputs, lr=0.5)
    ref = ReferencePolicy(model)
    assert ref.mode == "adapters_disabled" and ref.frozen_copy is None
    base = AutoModelForImageTextToText.from_pretrained(path).eval()
    model.eval()
    with torch.no_grad():
        expected = _token_logp(base, inputs)
        trained = _token_logp(model, inputs)
    with ref.model() as reference:
        got = _token_logp(reference, inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(trained, expected, atol=1e-4)  # adapters did change the policy


def test_frozen_copy_reference_without_lora(tiny_model_dirs):
    model, processor = load_policy(PolicyConfig(tiny_model_dirs["qwen3_vl"]))
    ref = ReferencePolicy(model)
    assert ref.mode == "frozen_copy"
    inputs = _batch(model, processor)
    with ref.model() as reference:
        before = _token_logp(reference, inputs)
    _lm_step(model, inputs, lr=0.5)
    with ref.model() as reference:
        after = _token_logp(reference, inputs)
        assert not any(p.requires_grad for p in reference.parameters())
    torch.testing.assert_close(before, after)
    with pytest.raises(ValueError, match="LoRA"):
        ReferencePolicy(model, mode="adapters_disabled")


def test_qlora_step_runs_with_4bit_base(tiny_model_dirs):
    import bitsandbytes as bnb

    cfg = PolicyConfig(
        tiny_model_dirs["qwen2_5_vl"], lora=LoraSettings(r=4, dropout=0.0),
        quantization="nf4",
        double_quant=False,
    )
    model, processor = load_policy(cfg)
    four_bit_names = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "no 4-bit layers"
    # The text decoder is quantised; the vision tower and lm_head stay full precision.
    assert all("language_model" in n for n in four_bit_names)
    assert len(four_bit) == 4 * 7  # 4 decoder layers x (q, k, v, o, gate, up, down)
    assert all(m.weight.dtype == torch.uint8 for m in four_bit)  # packed nf4 storage
    assert all(m.weight.quant_state.quant_type == "nf4" for m in four_bit)
    assert not any(m.weight.requires_grad for m in four_bit)
    inputs = _batch(model, processor)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _lm_step(model, inputs)
    _lm_step(model, inputs)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="needs lora"):
        PolicyConfig("x", quantization="nf4")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            load_policy(PolicyConfig("x", attn_implementation="flash_attention_2"))
