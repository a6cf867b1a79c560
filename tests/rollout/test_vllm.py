"""vLLM engine: runs only where vllm and CUDA exist; elsewhere the switch fails clearly."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from visgrpo.rollout import SamplingConfig, build_rollout_engine

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM and torch.cuda.is_available(), reason="vllm and CUDA present")
def test_missing_vllm_or_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="rollout engine 'vllm' needs"):
        build_rollout_engine("vllm", model_path="unused")


@pytest.mark.gpu
@pytest.mark.skipif(
    not (HAS_VLLM and torch.cuda.is_available()), reason="needs vllm and a CUDA GPU"
)
def test_vllm_layout_matches_hf_prompt_side(tiny_model_dirs):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tests.rollout.conftest import prompt_batch

    path = tiny_model_dirs["qwen2_5_vl"]
    model = AutoModelForImageTextToText.from_pretrained(path).cuda()
    processor = AutoProcessor.from_pretrained(path)
    engine = build_rollout_engine("vllm", model_path=path, dtype="float32", max_model_len=512)
    rb = engine.generate(
        model,
        processor,
        prompt_batch(processor),
        SamplingConfig(max_new_tokens=4, num_generations=2),
        seed=0,
    )
    assert rb.batch_size == 4 and rb.group_ids.tolist() == [0, 0, 1, 1]
    with torch.no_grad():
        logits = model(**rb.model_inputs()).logits
    assert torch.isfinite(logits).all()
