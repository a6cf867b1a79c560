"""The memory estimate: the per-layer activation count against the tensors autograd really
saves, the step shape and the per-GPU sums by hand.
"""

from __future__ import annotations

import pytest
import torch

from visgrpo.models.lora import LoraSettings, apply_lora
from visgrpo.plan.memory import (
    GIB,
    StepShape,
    activation_bytes,
    decoder_bytes_per_token,
    plan_memory,
    probe_bytes,
)
from visgrpo.plan.model import ModelFacts, _dims, _lora_shape


def _layer_and_facts(family: str, lora: bool, dtype: torch.dtype):
    import transformers

    from visgrpo.models.families import get_family
    from visgrpo.models.tiny import _model_config, build_tokenizer

    dims = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=8,
                num_key_value_heads=2)
    cfg = _model_config(family, build_tokenizer(), dims, 2, 32)
    torch.manual_seed(0)
    model = getattr(transformers, get_family(family).model_class)(cfg).to(dtype)
    settings = LoraSettings() if lora else None
    if lora:
        model = apply_lora(model, settings)
    model.train()
    fam, text, vision = _dims(cfg)
    shape = _lora_shape(text, settings, 4) if lora else None
    facts = ModelFacts("tiny", fam, text, vision, 0, 0, 0, 0, torch.empty(0, dtype=dtype).element_size(), 0,
                       not lora, not lora, shape)
    return model, facts


def _saved_bytes_per_token(model, lora: bool) -> float:
    """Bytes autograd saves in the SECOND decoder layer (its input requires grad, as in any
    layer after the first), per token, measured with saved-tensor hooks (one count per storage).
    """
    from transformers.masking_utils import create_causal_mask

    base = model.get_base_model() if lora else model
    text = base.model.language_model
    B, L = 2, 48
    ids = torch.randint(20, 100, (B, L))
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, :3] = 0  # left padding: SDPA gets a mask (key/value heads repeated)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def run(n_layers: int) -> int:
        seen: dict[int, int] = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            h = text.embed_tokens(ids).detach().requires_grad_(not lora)
            pos = torch.arange(L)[None].expand(3, B, L)
            pe = text.rotary_emb(h, pos)
            m = create_causal_mask(config=base.config.get_text_config(), inputs_embeds=h, attention_mask=mask,
                                   past_key_values=None, position_ids=pos[0])
            for layer in text.layers[:n_layers]:
                h = layer(h, attention_mask=m, position_embeddings=pe, position_ids=pos[0])
                h = h[0] if isinstance(h, tuple) else h
        return sum(seen.values())

    return (run(2) - run(1)) / (B * L)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_decoder_layer_count_matches_saved_tensors(family, lora, dtype):
    model, facts = _layer_and_facts(family, lora, dtype)
    measured = _saved_bytes_per_token(model, lora)
    estimate = decoder_bytes_per_token(facts, padded=True, device="cpu")
    assert estimate == pytest.approx(measured, rel=0.05)


def _facts(**kw) -> ModelFacts:
    from visgrpo.plan.model import TextDims, VisionDims

    text = TextDims(hidden=64, inter=128, layers=4, heads=4, kv_heads=2, head_dim=16, vocab=100, qk_norm=False)
    vision = VisionDims(depth=2, hidden=32, inter=64, heads=2, gated=True, merge=2)
    base = dict(name="x", family="qwen2_5_vl", text=text, vision=vision, total_params=1000, trainable_params=1000,
                weight_bytes=4000, trainable_bytes=4000, compute_bytes=4, serve_bytes=4000, base_trainable=True,
                vision_trainable=True, lora=None)
    return ModelFacts(**{**base, **kw})


def test_step_shape_by_hand():
    s = StepShape(prompts=3, G=4, prompt_tokens=100, response_tokens=20, image_tokens=60, micro_batch_size=10)
    assert s.micro_rows == 8 and s.micro_groups == 2  # whole groups of 4
    assert s.forward_tokens() == 2 * 100 + 8 * 21  # each prompt once, T + 1 continuation rows
    assert s.attention_keys() == 2 * 100 + 8 * 120
    assert s.rollout_tokens(gpus=2) == 2 * 3 * 4 * 120
    plain = StepShape(prompts=3, G=4, prompt_tokens=100, response_tokens=20, image_tokens=60, micro_batch_size=2,
                      share_prefix=False)
    assert plain.micro_rows == 4  # a group larger than the micro-batch is a micro-batch of its own
    assert plain.forward_tokens() == plain.attention_keys() == 4 * 120


def test_full_fine_tuning_decoder_count_by_hand():
    """H 64, q 64, kv 32 (repeated to 64 when padded), I 128, 4 heads, float32: norms
    2 x 12h, attention 4 (2q + 2q_rep) + 4 x 4 heads + 4q, MLP 4 x 4I.
    """
    f = _facts()
    assert decoder_bytes_per_token(f, padded=True) == 2 * 12 * 64 + 4 * (2 * 64 + 2 * 64) + 16 + 4 * 64 + 16 * 128
    assert decoder_bytes_per_token(f, padded=False) == decoder_bytes_per_token(f, padded=True) - 4 * 2 * 32


def test_checkpointing_keeps_layer_inputs_and_one_layer():
    f = _facts(vision_trainable=False)
    s = StepShape(prompts=1, G=2, prompt_tokens=30, response_tokens=10, image_tokens=16, micro_batch_size=2,
                  share_prefix=False)
    no_gc = activation_bytes(f, s)
    gc = activation_bytes(f, StepShape(**{**s.__dict__, "checkpointing": True}))
    per_layer = decoder_bytes_per_token(f, padded=True)
    tokens = 2 * 40
    assert no_gc - gc == (4 - 1) * tokens * per_layer - tokens * 4 * 4 * 64


def test_sharding_replication_and_fit_warnings():
    f = _facts(weight_bytes=8 * GIB, trainable_bytes=8 * GIB)
    s = StepShape(prompts=1, G=2, prompt_tokens=30, response_tokens=10, image_tokens=16, micro_batch_size=2)
    one = plan_memory(f, s, 1, sharded=False, gpu_memory=80 * GIB)
    ddp = plan_memory(f, s, 4, sharded=False, gpu_memory=80 * GIB)
    fsdp = plan_memory(f, s, 4, sharded=True, gpu_memory=80 * GIB)
    assert one.rows["gradients"] == 8 * GIB and ddp.rows["gradients"] == 16 * GIB  # DDP's bucket copy
    assert fsdp.rows["weights"] == fsdp.rows["gradients"] == 2 * GIB and fsdp.rows["optimiser"] == 4 * GIB
    assert not one.warnings  # 8 + 8 + 16 + small < 80
    assert ddp.peak - one.peak == 8 * GIB
    small = plan_memory(f, s, 1, sharded=False, gpu_memory=24 * GIB)
    assert small.warnings and "exceeds 24 GiB" in small.warnings[0]


def test_probe_masked_and_vllm_rows_appear_only_when_asked():
    f = _facts()
    s = StepShape(prompts=1, G=2, prompt_tokens=30, response_tokens=10, image_tokens=16, micro_batch_size=2)
    plain = plan_memory(f, s, 1, False, 80 * GIB)
    assert plain.rows["probe"] == plain.rows["masked-image forward"] == plain.rows["vLLM share"] == 0
    probed = StepShape(**{**s.__dict__, "probe_layers": 2, "grad_probe_layers": 1, "masked_forward": True,
                          "engine": "vllm", "vllm_share": 0.5})
    p = plan_memory(f, probed, 1, False, 80 * GIB)
    # 1 head-mean layer + 1 per-head grad layer of [2 rows, 10, 16] float32, two score buffers
    # [2, 4 heads, 10, 40] float32, the float32 keys [2, 40, 32]
    assert probe_bytes(f, probed) == (1 + 4) * 2 * 10 * 16 * 4 + 2 * 2 * 4 * 10 * 40 * 4 + 2 * 40 * 32 * 4
    assert p.rows["masked-image forward"] > 0 and p.rows["rollout KV cache"] == 0
    assert p.rows["vLLM share"] == 40 * GIB
