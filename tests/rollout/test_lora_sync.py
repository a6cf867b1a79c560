"""What the vLLM engine sends at each rollout under LoRA (``merged_weights``), checked on
CPU: exactly the merged model's weights under the base model's names, text and
vision-tower adapters included, and the policy unmerged afterwards.
"""

from __future__ import annotations

import copy

import pytest
import torch

from visgrpo.models.loading import PolicyConfig, load_policy
from visgrpo.models.lora import LoraSettings
from visgrpo.rollout.vllm_engine import merged_weights


@pytest.mark.parametrize("include_vision", [False, True])
def test_synced_weights_equal_the_merged_model(tiny_model_dirs, include_vision):
    path = tiny_model_dirs["qwen2_5_vl"]
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, include_vision=include_vision)
    policy, _ = load_policy(PolicyConfig(path, lora=lora))
    torch.manual_seed(0)
    with torch.no_grad():  # adapters off zero, so merging changes the weights
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    merged = copy.deepcopy(policy).merge_and_unload().state_dict()
    base, _ = load_policy(PolicyConfig(path))
    assert set(merged) == set(base.state_dict())  # plain transformers names
    ids = torch.tensor([[5, 6, 7, 8]])
    policy.eval()
    with torch.no_grad():
        before = policy(input_ids=ids).logits
    with merged_weights(policy) as pairs:  # views of the live weights: vLLM copies them here
        synced = {name: t.clone() for name, t in pairs}
    assert set(synced) == set(merged)
    changed = 0
    for name, value in merged.items():
        torch.testing.assert_close(synced[name], value, rtol=0, atol=1e-6)
        changed += not torch.equal(value, base.state_dict()[name])
    vision_changed = any(not torch.equal(merged[n], base.state_dict()[n]) for n in merged if "visual" in n)
    assert changed > 0 and vision_changed == include_vision
    with torch.no_grad():  # unmerged again: the policy computes what it did before
        torch.testing.assert_close(policy(input_ids=ids).logits, before)
