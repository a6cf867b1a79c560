"""Shared prefill (HFRolloutEngine(share_prefill=True)) against the G-fold prefill of
``generate(num_return_sequences=G)``: same tokens, same logits, one prefill per prompt.
"""

from __future__ import annotations

import pytest
import torch
from peft import PrefixTuningConfig, get_peft_model
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.rollout.conftest import make_rows, prompt_batch
from tests.rollout.test_hf import _teacher_forced_logits
from visgrpo.models.loading import PolicyConfig, load_policy
from visgrpo.models.lora import LoraSettings, unwrap_peft
from visgrpo.rollout import HFRolloutEngine, SamplingConfig
from visgrpo.rollout.assemble import encode_prompts
from visgrpo.rollout.hf import shared_prefill_blocker

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def three_rows() -> list[dict]:
    """make_rows plus a third, larger image: three different image-token counts."""
    third = {
        "id": "r2",
        "image": Image.new("RGB", (200, 120), (0, 200, 0)),
        "question": "which shape is on the left ?",
        "answer": "square",
        "answer_type": "text",
        "width": 200,
        "height": 120,
    }
    return make_rows() + [third]


class Calls:
    """Records the batch x length of every language-model forward and counts vision-tower calls."""

    def __init__(self, model):
        inner = unwrap_peft(model).model
        self.lm: list[tuple[int, int]] = []
        self.vision = 0
        self.handles = [
            inner.language_model.register_forward_pre_hook(self._lm, with_kwargs=True),
            inner.visual.register_forward_pre_hook(self._vision),
        ]

    def _lm(self, module, args, kwargs):
        self.lm.append(tuple(kwargs["inputs_embeds"].shape[:2]))

    def _vision(self, module, args):
        self.vision += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def both(model, processor, pb, sampling, seed=3, **kw):
    """(shared, G-fold) rollouts of the same prompts and seed, each with its forward calls."""
    out = []
    for share in (True, False):
        engine = HFRolloutEngine(return_logits=True, share_prefill=share, **kw)
        with Calls(model) as calls:
            rb = engine.generate(model, processor, pb, sampling, seed=seed)
        out.append((rb, calls))
    return out


def assert_same(a, b):
    """Identical rollouts; generation logits equal to 1e-5."""
    for name in ("input_ids", "attention_mask", "response_ids", "response_mask", "pixel_values",
                 "image_grid_thw", "pixel_counts", "group_ids", "truncated", "rejected"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.completions == b.completions
    assert float((a.generation_logits - b.generation_logits).abs().max()) <= 1e-5


@pytest.mark.parametrize("tiny", FAMILIES, indirect=True)
def test_shared_prefill_matches_gfold_prefill(tiny):
    model, processor = tiny
    pb = prompt_batch(processor, three_rows())
    enc = encode_prompts(processor, pb)
    pad = (enc["attention_mask"] == 0).sum(-1)
    assert len(set(pad.tolist())) == 3  # three different left paddings
    G, T = 4, 6
    sampling = SamplingConfig(max_new_tokens=T, num_generations=G, temperature=1.0)
    (shared, calls), (gfold, calls_g) = both(model, processor, pb, sampling)
    assert_same(shared, gfold)
    # sampled, not degenerate: a group's responses differ
    assert any(
        not torch.equal(shared.response_ids[i * G], shared.response_ids[i * G + g])
        for i in range(3) for g in range(1, G)
    )
    # teacher-forced logits of the shared batch reproduce its generation logits
    tf = _teacher_forced_logits(model, shared)
    clean = (shared.vision_tokens == 0).nonzero().flatten()
    assert len(clean) >= 2
    diff = (tf - shared.generation_logits).abs().amax(-1)  # [B, T]
    assert float(diff[clean][shared.response_mask[clean]].max()) < 1e-4
    # one prefill of the 3 prompts (minus their last token), then 1 token per row per step
    S = enc["input_ids"].shape[1]
    assert calls.vision == 1 and calls.lm[0] == (3, S - 1)
    assert all(c == (3 * G, 1) for c in calls.lm[1:])
    assert calls_g.vision == 1 and calls_g.lm[0] == (3 * G, S)
    if shared.truncated.any():  # T decoding forwards: the prefill is one extra, small one
        assert len(calls.lm) == T + 1 and len(calls_g.lm) == T


def test_one_prompt_after_a_larger_batch_and_one_response(tiny):
    """P = 1 right after P = 3 (the model's stored rope offsets are rebuilt); G = 1 takes the
    G-fold path (nothing to share) and gives the same rollout as share_prefill=False.
    """
    model, processor = tiny
    sampling = SamplingConfig(max_new_tokens=5, num_generations=3)
    HFRolloutEngine().generate(model, processor, prompt_batch(processor, three_rows()), sampling, 0)
    one = prompt_batch(processor, three_rows()[2:])
    (shared, calls), (gfold, _) = both(model, processor, one, sampling, seed=11)
    assert_same(shared, gfold)
    assert calls.lm[0][0] == 1 and calls.lm[1][0] == 3
    sampling_1 = SamplingConfig(max_new_tokens=5, num_generations=1)
    enc = encode_prompts(processor, one)
    assert shared_prefill_blocker(model, enc, 1) == "one response per prompt: nothing to share"
    (shared, calls), (gfold, _) = both(model, processor, one, sampling_1, seed=11)
    assert_same(shared, gfold)
    assert calls.lm[0] == (1, enc["input_ids"].shape[1])  # the whole prompt in generate


def test_greedy_takes_the_gfold_path(tiny):
    model, processor = tiny
    pb = prompt_batch(processor)
    sampling = SamplingConfig(max_new_tokens=4, num_generations=3, do_sample=False)
    (shared, calls), (gfold, _) = both(model, processor, pb, sampling)
    assert_same(shared, gfold)
    assert calls.lm[0] == (2, encode_prompts(processor, pb)["input_ids"].shape[1])


def _lora_model(tiny_model_dirs):
    model, processor = load_policy(
        PolicyConfig(tiny_model_dirs["qwen2_5_vl"], lora=LoraSettings(r=4, dropout=0.1))
    )
    with torch.no_grad():  # a non-zero adapter, so that it shows in the logits
        gen = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model, processor


def test_peft_lora_model_shares_the_prefill(tiny_model_dirs):
    model, processor = _lora_model(tiny_model_dirs)
    model.train()  # generate restores it; LoRA dropout is off while sampling
    pb = prompt_batch(processor)
    assert shared_prefill_blocker(model, encode_prompts(processor, pb), 3) is None
    sampling = SamplingConfig(max_new_tokens=5, num_generations=3)
    (shared, calls), (gfold, _) = both(model, processor, pb, sampling)
    assert_same(shared, gfold)
    assert calls.lm[0][0] == 2 and calls.lm[1][0] == 6
    assert model.training
    with torch.no_grad():  # the adapter is active in the shared prefill
        model.base_model.disable_adapter_layers()
        plain = HFRolloutEngine(return_logits=True).generate(model, processor, pb, sampling, seed=3)
        model.base_model.enable_adapter_layers()
    assert float((plain.generation_logits - shared.generation_logits).abs().max()) > 1e-3


def test_prompt_learning_adapter_falls_back(tiny_model_dirs):
    """A peft prefix-tuning adapter builds its own cache: the engine takes the G-fold path."""
    path = tiny_model_dirs["qwen2_vl"]
    base = AutoModelForImageTextToText.from_pretrained(path)
    model = get_peft_model(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    processor = AutoProcessor.from_pretrained(path)
    pb = prompt_batch(processor)
    enc = encode_prompts(processor, pb)
    reason = shared_prefill_blocker(model, enc, 2)
    assert reason == "a peft prompt-learning adapter supplies its own cache"
    sampling = SamplingConfig(max_new_tokens=4, num_generations=2)
    (shared, calls), (gfold, _) = both(model, processor, pb, sampling)
    assert_same(shared, gfold)
    assert calls.lm[0] == (4, enc["input_ids"].shape[1])  # G-fold prefill
