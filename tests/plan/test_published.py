"""The shipped published model configs: loadable offline, and the parameter counts they give
on the meta device equal the released checkpoints' (the hub's safetensors totals).
"""

from __future__ import annotations

import pytest
import torch

from visgrpo.models.loading import PolicyConfig
from visgrpo.models.lora import LoraSettings
from visgrpo.plan.model import model_facts
from visgrpo.plan.published import PUBLISHED, published_config, published_id

# Total parameters of the released checkpoints (the hub's safetensors metadata, "Model size").
RELEASED = {
    "Qwen/Qwen2-VL-7B-Instruct": 8_291_375_616,
    "Qwen/Qwen2.5-VL-3B-Instruct": 3_754_622_976,
    "Qwen/Qwen2.5-VL-7B-Instruct": 8_292_166_656,
    "Qwen/Qwen3-VL-4B-Instruct": 4_437_815_808,
    "Qwen/Qwen3-VL-8B-Instruct": 8_767_123_696,
}


def test_every_shipped_config_loads_through_transformers_classes():
    import transformers

    for hub_id in PUBLISHED:
        cfg = published_config(hub_id)
        family = cfg.model_type
        assert type(cfg).__name__ == {"qwen2_vl": "Qwen2VLConfig", "qwen2_5_vl": "Qwen2_5_VLConfig",
                                      "qwen3_vl": "Qwen3VLConfig"}[family]
        assert isinstance(cfg, transformers.PretrainedConfig)


@pytest.mark.parametrize("hub_id", sorted(RELEASED))
def test_parameter_counts_match_the_released_checkpoints(hub_id):
    facts = model_facts(PolicyConfig(hub_id, dtype="bfloat16"))
    assert facts.total_params == RELEASED[hub_id]
    assert facts.trainable_params == facts.total_params  # full fine-tuning
    assert facts.weight_bytes == 2 * facts.total_params  # bf16


def test_names_resolve_with_or_without_owner():
    assert published_id("qwen2.5-vl-7b-instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert published_id("Qwen/Qwen3-VL-8B-Instruct") == "Qwen/Qwen3-VL-8B-Instruct"
    assert published_id("Qwen/Qwen2.5-VL-72B-Instruct") is None


def test_lora_and_qlora_counts_on_the_meta_device():
    """r=16 on the 7 text projections of the 28 layers of Qwen2.5-VL-7B (h 3584, q 3584,
    kv 512, MLP 18944): 16 x sum(in + out) per layer, by hand.
    """
    h, kv, inter, L, r = 3584, 512, 18944, 28, 16
    per_layer = r * ((h + h) + (h + kv) * 2 + (h + h) + (h + inter) * 2 + (inter + h))
    lora = LoraSettings(r=r, alpha=32, dropout=0.05)
    facts = model_facts(PolicyConfig("Qwen/Qwen2.5-VL-7B-Instruct", dtype="bfloat16", lora=lora))
    assert facts.trainable_params == L * per_layer
    assert facts.trainable_bytes == 4 * L * per_layer  # peft keeps float32 adapters on a bf16 base
    q = model_facts(PolicyConfig("Qwen/Qwen2.5-VL-7B-Instruct", dtype="bfloat16", lora=lora, quantization="nf4"))
    assert q.trainable_params == facts.trainable_params
    # 4-bit text linears (0.5 B + double-quantised absmax per 64) and float32 for the rest
    linear = L * (h * h + 2 * h * kv + h * h + 3 * h * inter)
    rest = RELEASED["Qwen/Qwen2.5-VL-7B-Instruct"] - linear
    expected = linear * 0.5 + linear / 64 * (1 + 4 / 256) + 4 * rest + 4 * L * per_layer
    assert q.weight_bytes == pytest.approx(expected, rel=1e-6)


def test_model_is_never_materialised():
    facts = model_facts(PolicyConfig("Qwen/Qwen2.5-VL-32B-Instruct", dtype="bfloat16"))
    assert facts.total_params > 33e9 and facts.text.layers == 64
    assert torch.empty(0).device.type == "cpu"  # the meta device context did not leak
