"""A box round-trips in each family's coordinate convention, and data tools, the grounding
reward, the evaluation scorer and the prompt agree on that convention, in the model's
input frame (the processor's real resize).
"""

from __future__ import annotations

import pytest
from PIL import Image

from data_tools.boxes import to_xyxy_pixels
from visgrpo.data.geometry import processor_geometry
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import score
from visgrpo.rewards.coords import from_original, grounding_instruction
from visgrpo.rewards.grounding import grounding_iou, to_original

W, H = 301, 187  # odd sizes: the resize changes the aspect slightly
MODEL_BOX = [12, 30, 150, 160]  # what the model writes (integers)


@pytest.fixture
def processor(tiny_model_dirs, family):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dirs[family])


def test_box_round_trips_in_the_family_convention(processor, family):
    geom = processor_geometry(processor)
    resized = geom.resized_hw(H, W)
    # the frame is the model's real input: the processor's own grid says the same size
    grid = processor.image_processor(images=[Image.new("RGB", (W, H))], return_tensors="pt")["image_grid_thw"]
    assert [int(grid[0, 1]) * geom.patch_size, int(grid[0, 2]) * geom.patch_size] == list(resized)

    original = to_original(MODEL_BOX, family, (W, H), resized)
    back = from_original(original, family, (W, H), resized)
    assert back == pytest.approx(MODEL_BOX, abs=1e-9)
    assert to_original(back, family, (W, H), resized) == pytest.approx(original, abs=1e-9)

    rh, rw = resized
    if family == "qwen2_5_vl":  # absolute pixels of the resized image
        expected = [12 * W / rw, 30 * H / rh, 150 * W / rw, 160 * H / rh]
        assert f"({rw}x{rh})" in grounding_instruction(family, resized)
    else:  # 0-1000 relative, the data tools' "thousand" scale
        expected = [12 * W / 1000, 30 * H / 1000, 150 * W / 1000, 160 * H / 1000]
        assert to_xyxy_pixels([MODEL_BOX], "xyxy-thousand", W, H, "t")[0].tolist() == pytest.approx(expected, rel=1e-6)
        assert "0 to 1000" in grounding_instruction(family, resized)
    assert original == pytest.approx(expected, abs=1e-9)

    # reward and evaluation read the same box back to the same pixels
    text = '{"bbox_2d": [12, 30, 150, 160]}'
    sample = {"id": "r", "family": family, "width": W, "height": H, "resized_hw": [resized],
              "answer": original}
    assert grounding_iou(text, sample, answer_tag=None).value == pytest.approx(1.0)
    item = EvalItem("r", [], "q", original, "box", "grounding",
                    {"family": family, "width": W, "height": H, "resized_hw": [resized]})
    assert score(text, item) == 1.0
    # the other convention misses for at least one of the two families' pairs
    other = "qwen3_vl" if family == "qwen2_5_vl" else "qwen2_5_vl"
    wrong = to_original(MODEL_BOX, other, (W, H), resized)
    assert wrong != pytest.approx(original, abs=1.0)


def test_unknown_family_and_missing_resize():
    with pytest.raises(ValueError, match="unknown family 'llava'"):
        from_original([0, 0, 1, 1], "llava", (10, 10))
    with pytest.raises(ValueError, match="needs the resized image size"):
        grounding_instruction("qwen2_5_vl")
