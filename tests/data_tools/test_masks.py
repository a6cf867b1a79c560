"""Evidence masks, region labels and targets against hand-computed values."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from data_tools.cli import main
from data_tools.errors import RecordError
from data_tools.grid import load_processor_grid
from data_tools.masks import build_masks, pixel_cell_weights, union_cell_coverage
from visgrpo.data.io import load_dataset_dir
from visgrpo.data.schema import FingerprintMismatch, check_fingerprint

Q25 = load_processor_grid("qwen2_5_vl")  # 224 x 224 stays 224 x 224: 8 x 8 tokens of 28 px


def _run(rows: dict, grid=Q25, **kw):
    n = len(rows["boxes"])
    rows = {"id": [f"r{i}" for i in range(n)], "width": [224] * n, "height": [224] * n, **rows}
    out, report = build_masks(datasets.Dataset.from_dict(rows), grid, progress=False, **kw)
    return out, report


def _grid(row, i=0, shape=(8, 8)):
    return np.asarray(row["evidence_mask"]).reshape(shape)


def test_box_covering_2x3_tokens_gives_six_full_cells():
    # x 28..112 px = tokens 1..4 (3 wide), y 56..112 px = tokens 2..4 (2 tall)
    out, _ = _run({"boxes": [[[28, 56, 112, 112]]]})
    m = _grid(out[0])
    assert out[0]["grid_thw"] == [[1, 16, 16]]
    np.testing.assert_array_equal(m[2:4, 1:4], np.ones((2, 3)))
    assert m.sum() == 6.0 and (m > 0).sum() == 6
    # Qwen3-VL upscales 224 -> 256 (min_pixels 65536): box x 256/224 = [32, 64, 128, 128]
    # = tokens (32 px) x 1..4, y 2..4 again
    out3, _ = _run({"boxes": [[[28, 56, 112, 112]]]}, grid=load_processor_grid("qwen3_vl"))
    m3 = _grid(out3[0])
    np.testing.assert_allclose(m3[2:4, 1:4], 1.0, atol=1e-6)
    assert abs(m3.sum() - 6.0) < 1e-5


def test_box_cutting_a_token_in_half_and_scaling():
    # x 14..28 px is the right half of token column 0
    out, _ = _run({"boxes": [[[14, 0, 28, 28]]]})
    m = _grid(out[0])
    assert m[0, 0] == 0.5 and m.sum() == 0.5
    # 448 x 448 image, max_pixels 224^2: resized 224 x 224 (scale 1/2); box [56,112,224,224]
    # -> [28, 56, 112, 112] resized px -> the same six cells
    g = load_processor_grid("qwen2_5_vl", max_pixels=224 * 224)
    out, _ = build_masks(datasets.Dataset.from_dict(
        {"id": ["a"], "width": [448], "height": [448], "boxes": [[[56, 112, 224, 224]]]}), g, progress=False)
    m = _grid(out[0])
    np.testing.assert_array_equal(m[2:4, 1:4], np.ones((2, 3)))
    assert m.sum() == 6.0


def test_union_is_not_double_counted():
    # token units [0,1.5]^2 and [0.5,2]^2: union area 2.25 + 2.25 - 1 = 3.5
    # cell (0,1): box1 x[1,1.5] y[0,1] = .5, box2 x[1,2] y[.5,1] = .5, both x[1,1.5] y[.5,1] = .25
    out, _ = _run({"boxes": [[[0, 0, 42, 42], [14, 14, 56, 56]]]})
    m = _grid(out[0])
    assert m[0, 0] == 1.0 and m[1, 1] == 1.0
    assert m[0, 1] == pytest.approx(0.75) and m[1, 0] == pytest.approx(0.75)
    assert m.sum() == pytest.approx(3.5)


def test_union_matches_point_sampling_reference():
    # independent reference: boxes on a 1/16-token lattice, coverage by counting the
    # centres of a 1/16 sub-grid (exact for such boxes)
    rng = np.random.default_rng(0)
    th, tw, sub = 5, 7, 16
    lo = rng.integers(0, [tw * sub - 1, th * sub - 1], size=(20, 3, 2))
    hi = lo + rng.integers(1, 3 * sub, size=(20, 3, 2))
    hi = np.minimum(hi, [tw * sub, th * sub])
    b = np.concatenate([lo, hi], -1)[..., [0, 1, 2, 3]] / sub  # [S, K, 4] (x0, y0, x1, y1)
    ours = union_cell_coverage(b, th, tw)  # [S, th, tw]
    c = (np.arange(th * sub) + 0.5) / sub
    r = (np.arange(tw * sub) + 0.5) / sub
    inside = ((b[:, :, None, None, 0] <= r[None, None, None, :]) & (r < b[:, :, None, None, 2])
              & (b[:, :, None, None, 1] <= c[None, None, :, None]) & (c[:, None] < b[:, :, None, None, 3]))
    pts = inside.any(1).reshape(20, th, sub, tw, sub).mean((2, 4))  # [S, th, tw]
    np.testing.assert_allclose(ours, pts, atol=1e-12)


def test_target_sums_to_one_peaks_in_box_and_matches_integration():
    out, _ = _run({"boxes": [[[28, 56, 112, 112]], []]}, sigma_scale=0.25, alpha=0.1)
    q = np.asarray(out[0]["evidence_target"], np.float64).reshape(8, 8)
    assert q.sum() == pytest.approx(1.0, abs=1e-6)
    r, c = np.unravel_index(q.argmax(), q.shape)
    assert 2 <= r < 4 and 1 <= c < 4  # inside the box's cells
    assert q.min() == pytest.approx(0.1 / 64, rel=1e-4)  # far cells: alpha / N only
    # independent reference: midpoint-rule integral of the peak-1 bump over each cell
    # box in tokens x [1,4], y [2,4] -> centre (2.5, 3), sigma (0.75, 0.5)
    s = (np.arange(400) + 0.5) / 400
    gx = np.array([np.exp(-0.5 * ((j + s - 2.5) / 0.75) ** 2).mean() for j in range(8)])
    gy = np.array([np.exp(-0.5 * ((i + s - 3.0) / 0.5) ** 2).mean() for i in range(8)])
    bump = np.outer(gy, gx)
    np.testing.assert_allclose(q, 0.9 * bump / bump.sum() + 0.1 / 64, atol=2e-6)
    # no boxes: uniform
    np.testing.assert_allclose(out[1]["evidence_target"], np.full(64, 1 / 64), rtol=1e-6)
    assert sum(out[1]["evidence_mask"]) == 0 and sum(out[1]["region_labels"]) == 0


@pytest.mark.parametrize(("width", "height", "boxes"), [
    (224, 224, [[28, 56, 112, 112]]),  # interior: tokens x [1, 4], y [2, 4] of 8 x 8
    (224, 224, [[168, 196, 224, 224]]),  # at the right and bottom border: bumps cut by the edge
    (300, 200, [[0, 0, 42, 42], [150, 20, 300, 90]]),  # two boxes; resized 196 x 308: 7 x 11 tokens
])
def test_target_column_is_ease_smoothed_evidence_target(width, height, boxes):
    import torch

    from visgrpo.data.evidence import smoothed_evidence_target

    out, _ = build_masks(datasets.Dataset.from_dict(
        {"id": ["a"], "width": [width], "height": [height], "boxes": [boxes]}), Q25, progress=False)
    th, tw = Q25.tokens_hw_many([height], [width])[0]
    assert out[0]["grid_thw"] == [[1, 2 * th, 2 * tw]]
    scale = np.array([tw / width, th / height] * 2)
    ref = smoothed_evidence_target(torch.tensor(np.asarray(boxes) * scale), (th, tw), sigma_scale=0.25, alpha=0.1)
    np.testing.assert_allclose(out[0]["evidence_target"], ref.numpy(), rtol=2e-7, atol=1e-9)  # float32 column
    assert abs(float(ref.sum()) - 1) < 1e-12


def test_region_labels_on_overlapping_boxes():
    # box 1 tokens x[0,2] y[0,1.5]; box 2 x[1,3] y[0,3]
    out, _ = _run({"boxes": [[[0, 0, 56, 42], [28, 0, 84, 84]]]})
    lab = np.asarray(out[0]["region_labels"]).reshape(8, 8)
    assert lab[0, 0] == 1  # only box 1
    assert lab[0, 1] == 1  # both cover it fully: tie -> lower index
    assert lab[1, 1] == 2  # box 1 covers .5, box 2 covers 1
    assert lab[1, 0] == 1  # box 1 .5, box 2 0
    assert lab[2, 0] == 0 and lab[2, 2] == 2 and lab[3, 3] == 0


def test_multi_image_sample():
    # image 0: 224 x 224 (64 tokens); image 1: 112 high x 224 wide (4 x 8 = 32 tokens)
    rows = {"id": ["m"], "width": [[224, 224]], "height": [[224, 112]],
            "boxes": [[[0, 0, 28, 28], [196, 196, 224, 224]]], "box_image": [[1, 0]]}
    out, _ = build_masks(datasets.Dataset.from_dict(rows), Q25, progress=False)
    r = out[0]
    assert r["grid_thw"] == [[1, 16, 16], [1, 8, 16]]
    m, lab = np.asarray(r["evidence_mask"]), np.asarray(r["region_labels"])
    assert len(m) == 96 and np.flatnonzero(m).tolist() == [63, 64]
    assert lab[64] == 1 and lab[63] == 2  # box 0 lies in image 1 (its first token is 64)
    q = np.asarray(r["evidence_target"], np.float64)
    assert q.sum() == pytest.approx(1.0, abs=1e-6) and set(np.argsort(q)[-2:]) == {63, 64}


def test_segmentation_masks_are_area_averaged():
    # RLE of a pixel mask filling x 28..111, y 56..111 = the 2 x 3 token box exactly,
    # plus a second object: the left half (14 px) of token (0, 7)
    a = np.zeros((224, 224), np.uint8)
    a[56:112, 28:112] = 1
    b = np.zeros((224, 224), np.uint8)
    b[0:28, 196:210] = 1
    segs = [json.dumps({"size": [224, 224], "counts": mask_utils.encode(np.asfortranarray(x))["counts"].decode()})
            for x in (a, b)]
    poly = json.dumps([[28, 56, 112, 56, 112, 112, 28, 112]])
    out, _ = _run({"boxes": [[[28, 56, 112, 112], [196, 0, 224, 28]], [[28, 56, 112, 112]]],
                   "segmentation": [segs, [poly]]})
    m = _grid(out[0])
    np.testing.assert_array_equal(m[2:4, 1:4], 1.0)
    assert m[0, 7] == pytest.approx(0.5, abs=1e-6)  # the box would say 1.0; the mask covers half the cell
    assert m.sum() == pytest.approx(6.5)
    assert np.asarray(out[0]["region_labels"]).reshape(8, 8)[0, 7] == 2
    # a polygon rectangle: pycocotools rasterisation is within one pixel row/column per edge
    np.testing.assert_allclose(_grid(out[1])[2:4, 1:4], 1.0, atol=2 / 28)
    # pixel/cell weights: 3 pixels into 2 cells of 1.5 px: [1, .5, 0] / 1.5 and [0, .5, 1] / 1.5
    np.testing.assert_allclose(pixel_cell_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], rtol=1e-6)


def test_bad_records_raise_or_skip_with_reasons():
    rows = {"boxes": [[[0, 0, 28, 28]], [[0, 0, 28, 28], [10, 10, 5, 20]], [[0, 0, float("nan"), 5]],
                      [[0, 0, 300, 20]], [[0, 0, 10, 10]]],
            "width": [224, 224, 224, 224, 224], "height": [224, 224, 224, 224, 1]}
    with pytest.raises(RecordError, match=r"id=r1: field 'boxes\[1\]': inverted"):
        _run(rows)
    out, rep = _run(rows, on_error="skip")
    assert out["id"] == ["r0"] and rep.processed == 5 and rep.skipped == 4
    reasons = " | ".join(f"{k}" for k in rep.counts)
    for frag in ("boxes[1]: inverted", "boxes[0]: non-finite", "boxes[0]: out of bounds", "width/height"):
        assert frag in reasons


def test_fingerprint_recorded_and_checked(masked_dir):
    ds, meta = load_dataset_dir(masked_dir / "train")
    fp = meta["processor"]
    assert fp == Q25.fingerprint()
    check_fingerprint(fp, Q25.fingerprint())
    with pytest.raises(FingerprintMismatch, match="patch_size: dataset=14 model=16"):
        check_fingerprint(fp, load_processor_grid("qwen3_vl").fingerprint())
    with pytest.raises(FingerprintMismatch, match="max_pixels"):
        check_fingerprint(fp, load_processor_grid("qwen2_5_vl", max_pixels=10**6).fingerprint())
    # synth evidence: every target peaks inside one of the record's boxes (in token cells)
    for r in ds.select(range(10)):
        q = np.asarray(r["evidence_target"]).reshape(8, 8)
        i, j = np.unravel_index(q.argmax(), q.shape)
        assert any(x0 // 28 <= j <= (x1 - 1) // 28 and y0 // 28 <= i <= (y1 - 1) // 28
                   for x0, y0, x1, y1 in r["boxes"])


def test_no_partial_output_after_failure(synth_dir, tmp_path, monkeypatch):
    import data_tools.masks as masks_mod

    real, calls = masks_mod.evidence_for_table, []

    def failing(*a, **k):  # the second split fails after the first was written
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        return real(*a, **k)

    monkeypatch.setattr(masks_mod, "evidence_for_table", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        main(["masks", "--dataset", str(synth_dir), "--out", str(out), "--processor", "qwen2_vl", "--no-progress"])
    assert len(calls) == 2 and not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(masks_mod, "evidence_for_table", real)
    # a bad record with --on-error raise: exit code 1, nothing written
    bad = tmp_path / "bad"
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "width": [10, 10], "height": [10, 10],
                                     "boxes": [[[0, 0, 5, 5]], [[0, 0, 50, 5]]]})
    ds.save_to_disk(str(bad))
    assert main(["masks", "--dataset", str(bad), "--out", str(out), "--processor", "qwen2_vl", "--no-progress"]) == 1
    assert not out.exists()
    report = tmp_path / "skip.json"
    assert main(["masks", "--dataset", str(bad), "--out", str(out), "--processor", "qwen2_vl", "--no-progress",
                 "--on-error", "skip", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["skipped"] == 1 and len(load_dataset_dir(out)[0]) == 1
