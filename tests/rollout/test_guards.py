"""Rollout guards: vision / placeholder tokens can never be sampled (HF ``suppress_tokens``,
vLLM ``bad_words``), and a batch mixing text-only, one-image and two-image prompts goes
through one RL step end to end.
"""

from __future__ import annotations

import types

import lightning as L
import pytest
import torch
from PIL import Image

from tests.rollout.conftest import prompt_batch
from visgrpo.rollout import HFRolloutEngine, SamplingConfig
from visgrpo.rollout.assemble import encode_prompts
from visgrpo.rollout.vision import vision_token_ids


@pytest.fixture
def favouring(tiny):
    """The tiny model with logits that favour the vision tokens by a wide margin
    (image_pad first): an lm_head forward hook adds a bias to their columns.
    """
    model, processor = tiny
    ids = vision_token_ids(processor.tokenizer)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    bias = torch.zeros(model.lm_head.out_features)
    bias[ids] = 50.0
    bias[pad] = 100.0
    handle = model.lm_head.register_forward_hook(lambda m, i, out: out + bias)
    yield model, processor, ids, pad
    handle.remove()


@pytest.mark.parametrize("do_sample", [False, True])
def test_hf_engine_never_samples_vision_tokens(favouring, do_sample):
    model, processor, ids, pad = favouring
    pb = prompt_batch(processor)
    engine = HFRolloutEngine(return_logits=True)
    sampling = SamplingConfig(max_new_tokens=6, num_generations=2, do_sample=do_sample)
    rb = engine.generate(model, processor, pb, sampling, seed=0)
    assert rb.vision_tokens.tolist() == [0] * 4  # none generated, none to clean up
    assert rb.response_mask.sum(-1).min() >= 1
    assert (rb.generation_logits.argmax(-1) == pad).all()  # the raw logits favour image_pad

    # control: without the guard the same model emits image_pad at every step
    enc = encode_prompts(processor, pb)
    tok = processor.tokenizer
    config = engine.generation_config(sampling, [tok.eos_token_id], tok.pad_token_id, 1)
    with torch.no_grad():
        out = model.generate(**enc, generation_config=config)
    gen = out.sequences[:, enc["input_ids"].shape[1]:]
    assert (gen == pad).all()


def test_vllm_sampling_params_ban_vision_tokens(tiny):
    from visgrpo.rollout.vllm_engine import VLLMRolloutEngine, vision_token_strings

    _, processor = tiny
    captured = {}
    engine = object.__new__(VLLMRolloutEngine)  # no vllm here: only the parameters are built
    engine.vllm = types.SimpleNamespace(SamplingParams=lambda **kw: captured.update(kw) or kw)
    banned = vision_token_strings(processor.tokenizer)
    assert "<|image_pad|>" in banned and "<|video_pad|>" in banned and "<|vision_start|>" in banned
    engine.sampling_params(SamplingConfig(num_generations=2), [1], 0, banned=banned)
    assert captured["bad_words"] == banned
    vocab = processor.tokenizer.get_vocab()
    assert sorted(vocab[t] for t in banned) == vision_token_ids(processor.tokenizer)


def char_length(completion: str, sample: dict, **kwargs):
    """A reward that differs between responses (so the step has non-zero advantages)."""
    from visgrpo.rewards.types import RewardValue

    return RewardValue(len(completion) / 100.0)


def mixed_rows() -> list[dict]:
    red, blue = Image.new("RGB", (56, 56), (255, 0, 0)), Image.new("RGB", (84, 56), (0, 0, 255))
    base = {"answer": "red", "answer_type": "text"}
    return [
        {**base, "id": "text", "question": "what colour", "images": []},
        {**base, "id": "one", "question": "what colour", "images": [red]},
        {**base, "id": "two", "question": "which colour", "images": [red, blue]},
    ]


def test_mixed_text_one_and_two_image_prompts_train_one_step(tiny_model_dirs, tmp_path):
    from visgrpo.lightning import RLVRModule
    from visgrpo.models.loading import PolicyConfig
    from visgrpo.rewards.types import RewardSpec

    path = tiny_model_dirs["qwen2_5_vl"]
    module = RLVRModule(policy=PolicyConfig(path), objective="grpo", micro_batch_size=4,
                        rewards=[RewardSpec("tests.rollout.test_guards:char_length")],
                        sampling=SamplingConfig(num_generations=2, max_new_tokens=4), seed=0)
    batch = prompt_batch(module.processor, mixed_rows())
    assert [len(im) for im in batch.images] == [0, 1, 2]
    before = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    loader = torch.utils.data.DataLoader([batch], batch_size=None, collate_fn=lambda b: b)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 1
    rollout = module.last_rollout
    assert rollout.image_counts.tolist() == [0, 0, 1, 1, 2, 2]
    n_pad = (rollout.input_ids == module.processor.image_token_id).sum(-1)  # [B]
    assert n_pad[:2].tolist() == [0, 0] and (n_pad[4:] > n_pad[2:4]).all()
    assert all(torch.isfinite(torch.tensor(v)) for v in module.last_metrics.values())
    assert module.last_rewards.std() > 0  # non-zero advantages: the update is real
    assert any(not torch.equal(p, before[n]) for n, p in module.policy.named_parameters())
