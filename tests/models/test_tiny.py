"""Tiny models behave like the released ones: reload, forward, generate, image-token count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from visgrpo.models.families import FAMILIES, get_family
from visgrpo.models.tiny import build_tokenizer, main, words_of


def _inputs(processor, images, text="What colour is the circle?"):
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    return processor(text=[prompt], images=images, return_tensors="pt")


def test_reload_forward_generate(tiny_model_dirs, family):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_model_dirs[family]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    fam = get_family(family)
    assert type(model).__name__ == fam.model_class
    assert type(processor).__name__ == fam.processor_class
    assert processor.image_processor.patch_size == fam.patch_size
    assert processor.image_processor.merge_size == fam.merge_size
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 5_000_000

    # Two images of different sizes in one prompt.
    images = [Image.new("RGB", (150, 100), (255, 0, 0)), Image.new("RGB", (90, 120), (0, 0, 255))]
    inputs = _inputs(processor, images)
    grid = inputs["image_grid_thw"]  # [2, 3]
    n_pad = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_pad == int(grid.prod(-1).sum()) // fam.merge_size**2
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_chat_template_matches_qwen_layout(tiny_model_dirs):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dirs["qwen2_5_vl"])
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    # The layout of the released Qwen2.5-VL template.
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tokenizer_round_trip_and_specials():
    tok = build_tokenizer(corpus=["zebra stripes"])
    text = "<think> the red circle </think>\n<answer> B </answer> zebra 42"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids
    # "42" is two digit pieces, the tags are single tokens.
    assert len(tok("42")["input_ids"]) == 2
    assert len(tok("<answer>")["input_ids"]) == 1
    for special in ("<|image_pad|>", "<|vision_start|>", "<|im_end|>"):
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id
    assert words_of(["a  b,c"]) == ["a", "b", ",", "c"]


def test_cli_writes_loadable_dir(tmp_path: Path, capsys):
    assert main(["--family", "qwen2_vl", "--out", str(tmp_path / "m")]) == 0
    assert "parameters" in capsys.readouterr().out
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl"
    assert (tmp_path / "m" / "tokenizer.json").exists()


def test_unknown_family_lists_valid():
    with pytest.raises(KeyError, match="qwen2_5_vl"):
        get_family("llava")
    assert set(FAMILIES) == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}
