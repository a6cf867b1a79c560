"""Grounding IoU: known boxes and the coordinate system of each model family."""

from __future__ import annotations

import pytest

from visgrpo.rewards import box_iou, gold_box, grounding_iou, parse_box, to_original


def test_iou_known_boxes():
    # overlap [5,10]x[5,10] = 25; areas 100 + 100; union 175
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges
    # [2,2,4,4] inside [0,0,10,10]: 4 / 100
    assert box_iou([0, 0, 10, 10], [2, 2, 4, 4]) == pytest.approx(0.04)
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # empty union


def test_iou_equals_torchvision():
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, 2, generator=g, dtype=torch.float64) * 100  # [n, 2 boxes, 2]
    wh = torch.rand(200, 2, 2, generator=g, dtype=torch.float64) * 60
    boxes = torch.cat([xy, xy + wh], -1)  # [n, 2, 4] valid xyxy, many overlapping
    ref = tv_box_iou(boxes[:, 0], boxes[:, 1]).diagonal()  # [n]
    ours = torch.tensor([box_iou(a.tolist(), b.tolist()) for a, b in boxes], dtype=torch.float64)
    assert (ref > 0).sum() > 40  # overlaps and disjoint pairs both covered
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ('```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "cat"}]\n```', [1, 2, 3, 4]),
        ('{"bbox_2d":[10.5,20,30,40]}', [10.5, 20, 30, 40]),
        ("<|box_start|>(10,20),(30,40)<|box_end|>", [10, 20, 30, 40]),
        ("the box is [ 1.5, 2,3 , 4] I think", [1.5, 2, 3, 4]),
        ("[1, 2, 3]", None),
        ("no box", None),
        ("[" + "9" * 5000 + ", 1, 2, 3]", None),  # absurd number: not a box
    ],
)
def test_parse_box(text, box):
    assert parse_box(text) == box


# Original image W x H = 800 x 600; processor-resized (h', w') = (300, 200), so a pixel of
# the resized image is 800/200 = 4 original pixels wide and 600/300 = 2 high.
W, H, RESIZED = 800, 600, (300, 200)


def test_to_original_qwen2_5_vl_resized_pixels():
    # [10, 20, 60, 80] * (4, 2, 4, 2) = [40, 40, 240, 160]
    assert to_original([10, 20, 60, 80], "qwen2_5_vl", (W, H), RESIZED) == [40, 40, 240, 160]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_to_original_relative_1000(family):
    # [50, 100, 300, 400] * (800/1000, 600/1000, ...) = [40, 60, 240, 240]; resized size unused
    assert to_original([50, 100, 300, 400], family, (W, H), RESIZED) == pytest.approx(
        [40, 60, 240, 240]
    )


def test_to_original_orders_and_clips():
    # qwen2_vl [900, 500, 1200, -10] -> x: 720, 960 -> clip 800; y: 300, -6 -> clip 0; ordered
    assert to_original([900, 500, 1200, -10], "qwen2_vl", (W, H)) == pytest.approx(
        [720, 0, 800, 300]
    )
    with pytest.raises(ValueError, match="resized_hw"):
        to_original([0, 0, 1, 1], "qwen2_5_vl", (W, H), None)
    with pytest.raises(ValueError, match="unknown family 'llava'"):
        to_original([0, 0, 1, 1], "llava", (W, H))


def _sample(family, **kw):
    s = {"id": "g1", "answer": "[40, 40, 240, 160]", "answer_type": "box", "family": family}
    s.update(width=W, height=H, resized_hw=[RESIZED])
    s.update(kw)
    return s


def test_grounding_iou_per_family():
    ans = '<answer>{"bbox_2d": [10, 20, 60, 80]}</answer>'
    # Qwen2.5-VL: resized pixels -> [40, 40, 240, 160] == gold
    assert grounding_iou(ans, _sample("qwen2_5_vl")).value == pytest.approx(1.0)
    # The same numbers from Qwen2-VL mean 0-1000: [8, 12, 48, 48]; overlap with gold
    # [40,48]x[40,48] = 64; areas 40*36 = 1440 and 200*120 = 24000; union 25376
    assert grounding_iou(ans, _sample("qwen2_vl")).value == pytest.approx(64 / 25376)
    # Qwen3-VL answering the gold box in 0-1000: [50, 200/3, 300, 800/3] -> exact
    assert grounding_iou(
        "<answer>[50, 66.6667, 300, 266.6667]</answer>", _sample("qwen3_vl")
    ).value == (pytest.approx(1.0, abs=1e-5))


def test_grounding_iou_modes_and_failures():
    s = _sample("qwen2_5_vl")
    # [10, 20, 35, 80] -> [40, 40, 140, 160]: half the gold (100*120 / 200*120) -> IoU 0.5
    half = "<answer>[10, 20, 35, 80]</answer>"
    assert grounding_iou(half, s).value == pytest.approx(0.5)
    assert grounding_iou(half, s, mode="threshold", threshold=0.5).value == 1.0
    assert grounding_iou(half, s, mode="threshold", threshold=0.6) == (0.0, "IoU 0.500")
    assert grounding_iou("<answer>somewhere left</answer>", s) == (0.0, "no box found")
    with pytest.raises(ValueError, match="'family' is missing"):
        grounding_iou(half, {"answer": "[0,0,1,1]", "width": 1, "height": 1})
    with pytest.raises(ValueError, match="mode"):
        grounding_iou(half, s, mode="giou")


def test_gold_from_boxes_and_multi_image():
    # answer is text, gold is boxes[1], which lies in image 1 (box_image) of size 400 x 200
    # resized to (h', w') = (100, 100): scale (4, 2). Answer [10, 10, 20, 20] -> [40, 20, 80, 40]
    s = {
        "id": "mi",
        "answer": "the dog",
        "boxes": [[0, 0, 5, 5], [40, 20, 80, 40]],
        "box_image": [0, 1],
        "width": [800, 400],
        "height": [600, 200],
        "resized_hw": [RESIZED, (100, 100)],
        "family": "qwen2_5_vl",
    }
    assert gold_box(s, 1) == [40, 20, 80, 40]
    assert grounding_iou(
        "<answer>[10, 10, 20, 20]</answer>", s, gold_index=1
    ).value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="record 'mi': no gold box"):
        gold_box(s, 5)
