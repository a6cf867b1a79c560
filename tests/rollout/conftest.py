"""Fixtures for rollout tests: a tiny model + processor and a PromptBatch of 2 prompts."""

from __future__ import annotations

import pytest
from PIL import Image


def make_rows() -> list[dict]:
    """Two prompts with different image sizes and question lengths (so left padding is real)."""
    return [
        {
            "id": "r0",
            "image": Image.new("RGB", (150, 100), (255, 0, 0)),
            "question": "What colour is the circle ?",
            "answer": "red",
            "answer_type": "text",
            "width": 150,
            "height": 100,
        },
        {
            "id": "r1",
            "image": Image.new("RGB", (64, 90), (0, 0, 255)),
            "question": "how many",
            "answer": "2",
            "answer_type": "number",
            "width": 64,
            "height": 90,
        },
    ]


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs, request):
    """(model, processor) of the tiny qwen2_5_vl (or the family given by indirect param)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family = getattr(request, "param", "qwen2_5_vl")
    path = tiny_model_dirs[family]
    return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)


def prompt_batch(processor, rows=None):
    from visgrpo.data.geometry import processor_geometry
    from visgrpo.lightning.data import PromptCollator

    collate = PromptCollator(processor, processor_geometry(processor), "{question}", None)
    return collate(rows if rows is not None else make_rows())
