"""The ``segmentation`` column round-trips from every writer (synth, convert coco / jsonl) into
``masks``: one JSON text per box, ``""`` for none (data_tools/segmentation.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from data_tools.cli import main
from data_tools.errors import RecordError
from data_tools.grid import load_processor_grid
from data_tools.masks import build_masks
from data_tools.segmentation import decode_record, encode_mask, segmentation_column
from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir

Q25 = load_processor_grid("qwen2_5_vl")  # 224 x 224 stays 224 x 224: 8 x 8 tokens of 28 px
# Right triangle (0,0), (224,0), (0,224): half of its box [0, 0, 224, 224]. Token cell (r, c)
# lies wholly inside when r + c <= 6, is cut in half by the hypotenuse when r + c = 7, and
# is outside when r + c >= 8: 28 full cells + 8 halves = 32 = 64 / 2.
R, C = np.indices((8, 8))
TRIANGLE_CELLS = np.where(R + C <= 6, 1.0, np.where(R + C == 7, 0.5, 0.0))
# pycocotools rasterises the hypotenuse's pixels to one side: 14 of the 392 half-cell
# pixels are dropped (0.482 instead of 0.5); cells off the hypotenuse are exact.
RASTER_TOL = 0.02


def _mask_grid(row) -> np.ndarray:
    return np.asarray(row["evidence_mask"], np.float64).reshape(8, 8)


def _convert_coco_triangle(root: Path) -> Path:
    Image.new("RGB", (224, 224), (90, 90, 90)).save(root / "1.png")
    anns = [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 224, 224], "area": 25088,
             "iscrowd": 0, "segmentation": [[0, 0, 224, 0, 0, 224]]}]
    inst = {"images": [{"id": 1, "file_name": "1.png", "width": 224, "height": 224}],
            "annotations": anns, "categories": [{"id": 1, "name": "sail"}]}
    (root / "instances.json").write_text(json.dumps(inst))
    (root / "q.jsonl").write_text(json.dumps({"id": "t", "image_id": 1, "question": "What is it?",
                                              "answer": "sail", "ann_ids": [7]}) + "\n")
    out = root / "coco"
    assert run_command(["convert", "coco", "--instances", str(root / "instances.json"), "--questions",
                        str(root / "q.jsonl"), "--image-root", str(root), "--out", str(out),
                        "--no-progress"]) == 0
    return out


def test_convert_coco_triangle_to_masks_covers_half_its_box(tmp_path):
    ds, _ = load_dataset_dir(_convert_coco_triangle(tmp_path))
    assert ds[0]["segmentation"] == ['[[0.0,0.0,224.0,0.0,0.0,224.0]]']  # one JSON text per box
    seg_dir, box_dir = tmp_path / "seg", tmp_path / "box"
    base = ["masks", "--dataset", str(tmp_path / "coco"), "--processor", "qwen2_5_vl", "--no-progress"]
    assert main([*base, "--out", str(seg_dir)]) == 0
    assert main([*base, "--out", str(box_dir), "--no-segmentation"]) == 0
    by_seg, by_box = _mask_grid(load_dataset_dir(seg_dir)[0][0]), _mask_grid(load_dataset_dir(box_dir)[0][0])
    np.testing.assert_array_equal(by_box, np.ones((8, 8)))  # the box covers every token
    np.testing.assert_allclose(by_seg, TRIANGLE_CELLS, atol=RASTER_TOL)
    np.testing.assert_array_equal(by_seg[R + C != 7], TRIANGLE_CELLS[R + C != 7])
    assert by_seg.sum() == pytest.approx(by_box.sum() / 2, abs=8 * RASTER_TOL)  # 32 vs 64
    assert main(["validate", str(seg_dir), "--report", str(tmp_path / "v.json")]) == 0


def test_synth_to_masks_uses_the_drawn_shapes(synth_dir, masked_dir):
    ds, _ = load_dataset_dir(synth_dir / "train")
    masked, _ = load_dataset_dir(masked_dir / "train")
    boxes_only, _ = build_masks(ds, Q25, use_segmentation=False, progress=False)
    ratios: dict[str, list[float]] = {}
    for row, m_row, b_row in zip(ds, masked, boxes_only, strict=True):
        assert len(row["segmentation"]) == len(row["boxes"]) and all(row["segmentation"])
        # independent reference: the union of the decoded RLEs, averaged over 28 x 28 px cells
        pix = np.stack([mask_utils.decode({"size": [224, 224], "counts": json.loads(s)["counts"].encode()})
                        for s in row["segmentation"]]).max(0)  # [224, 224]
        np.testing.assert_allclose(_mask_grid(m_row), pix.reshape(8, 28, 8, 28).mean((1, 3)), atol=1e-6)
        if len(row["boxes"]) == 1:
            x0, y0, x1, y1 = row["boxes"][0]
            assert _mask_grid(b_row).sum() * 784 == pytest.approx((x1 - x0) * (y1 - y0), rel=1e-5)
            shape = row["box_labels"][0].split()[1]
            ratios.setdefault(shape, []).append(_mask_grid(m_row).sum() / _mask_grid(b_row).sum())
    # shape area / tight-box area: triangle (inscribed equilateral: (3 sqrt 3 / 4) r^2 over
    # r sqrt 3 x 1.5 r) and diamond 1/2, disc pi/4, square 1; rasterisation within 3 %.
    expected = {"triangle": 0.5, "diamond": 0.5, "circle": math.pi / 4, "square": 1.0}
    seen = [s for s in expected if s in ratios]
    assert len(seen) >= 2, ratios
    for shape in seen:
        np.testing.assert_allclose(ratios[shape], expected[shape], atol=0.03, err_msg=shape)


def test_jsonl_box_without_segmentation_is_empty_text_and_falls_back_to_boxes(tmp_path):
    Image.new("RGB", (224, 224)).save(tmp_path / "a.png")
    tri = [[0, 0, 224, 0, 0, 224]]
    rows = [{"image": "a.png", "question": "q", "answer": "a", "boxes": [[0, 0, 224, 224]], "seg": [tri]},
            {"image": "a.png", "question": "q", "answer": "a", "boxes": [[0, 0, 224, 224], [0, 0, 28, 28]],
             "seg": [tri, None]},
            {"image": "a.png", "question": "q", "answer": "a", "boxes": [[0, 0, 28, 28]]}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_command(["convert", "jsonl", "--input", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "ds"),
                        "--segmentation-field", "seg", "--no-progress"]) == 0
    ds, _ = load_dataset_dir(tmp_path / "ds")
    assert [len(s) for s in ds["segmentation"]] == [1, 2, 1]
    assert ds[1]["segmentation"][1] == "" and ds[2]["segmentation"] == [""]
    out, _ = build_masks(ds, Q25, progress=False)
    np.testing.assert_allclose(_mask_grid(out[0]), TRIANGLE_CELLS, atol=RASTER_TOL)
    # a box without segmentation: that image's coverage comes from the boxes
    np.testing.assert_array_equal(_mask_grid(out[1]), np.ones((8, 8)))
    assert _mask_grid(out[2])[0, 0] == 1.0 and _mask_grid(out[2]).sum() == 1.0


def test_format_helpers_and_the_retired_one_string_format():
    assert segmentation_column(None, 2, "r") == ["", ""]
    with pytest.raises(RecordError, match=r"field 'segmentation\[1\]\[0\]': polygon"):
        segmentation_column([None, [[1, 2, 3]]], 2, "r")
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 2:5] = 1
    (back, gap) = decode_record([encode_mask(m), ""], 2, 4, 6, "r")
    np.testing.assert_array_equal(back, m)
    assert gap is None
    old = json.dumps([{"size": [4, 6], "counts": "x"}, None])  # one JSON string per record
    with pytest.raises(RecordError, match="one JSON text per box"):
        decode_record(old, 2, 4, 6, "r")
    import datasets

    ds = datasets.Dataset.from_dict({"id": ["a"], "width": [6], "height": [4], "boxes": [[[0, 0, 2, 2]]],
                                     "segmentation": [old]})
    with pytest.raises(ValueError, match="expected a list of JSON texts, one per box"):
        build_masks(ds, Q25, progress=False)


def test_fast_segmentation_path_equals_the_overlap_products_on_random_masks():
    """The whole-pixel fast path (one pycocotools decode per image, block sums) and the tight
    run parser give exactly the previous results: overlap products of each decoded mask
    (data_tools.grid.segmentation_coverage) and the checked parser, on random masks.
    """
    import numpy as np
    from pycocotools import mask as mask_utils

    from data_tools.grid import block_coverage, segmentation_coverage
    from data_tools.segmentation import (
        _rle_runs,
        _rle_runs_checked,
        decode_segmentation,
        decode_segmentations,
        encode_mask,
    )

    rng = np.random.default_rng(0)
    for t in range(120):
        th, tw = (int(v) for v in rng.integers(1, 6, 2))
        h, w = th * int(rng.integers(1, 9)), tw * int(rng.integers(1, 9))
        k = int(rng.integers(1, 4))
        masks = (rng.random((k, h, w)) < rng.random()).astype(np.uint8)  # [K, H, W]
        masks[0] = 0 if t % 5 == 0 else masks[0]  # empty and full masks too
        masks[-1] = 1 if t % 7 == 0 else masks[-1]
        segs = [encode_mask(m) for m in masks]
        m_t = decode_segmentations(segs, h, w, "r", [f"segmentation[{i}]" for i in range(k)])  # [K, W, H]
        ref = np.stack([decode_segmentation(s, h, w, "r", "segmentation") for s in segs])
        assert np.array_equal(m_t.transpose(0, 2, 1), ref) and np.array_equal(ref, masks)
        for fast, slow in zip(block_coverage(m_t, th, tw), segmentation_coverage(ref, th, tw), strict=True):
            assert fast.dtype == slow.dtype and np.array_equal(fast, slow)
        for m in masks:
            counts = mask_utils.encode(np.asfortranarray(m))["counts"].decode()
            assert _rle_runs(counts) == _rle_runs_checked(counts)
    for bad in ("1O\x7f", "1O\u00e9", "1Oo"):  # invalid characters, truncated run: the checked messages
        with pytest.raises(ValueError) as fast_err:
            _rle_runs(bad)
        with pytest.raises(ValueError) as slow_err:
            _rle_runs_checked(bad)
        assert str(fast_err.value) == str(slow_err.value)
    with pytest.raises(ValueError, match="whole pixels"):
        block_coverage(np.zeros((1, 5, 4), np.uint8), 3, 2)
