"""augment: boxes stay consistent with masks; drops and clips are counted; flips only on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools import augment
from data_tools.cli import main
from data_tools.segmentation import decode_segmentation
from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir, save_dataset


def _rect(b):
    x0, y0, x1, y1 = b
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def make_dataset(root: Path, boxes_per_rec, size=(40, 40), extra_cols=False) -> Path:
    """A dataset via convert jsonl: rectangles on integer pixels, segmentation = the rectangles."""
    rows = []
    for i, boxes in enumerate(boxes_per_rec):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[..., 1] = np.arange(size[0], dtype=np.uint8)[None] * 5  # a gradient
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "question": "q?", "answer": "a", "boxes": boxes,
                     "labels": [f"o{j}" for j in range(len(boxes))], "seg": [_rect(b) for b in boxes]})  # fmt: skip
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "ds"
    assert main(["convert", "jsonl", "--input", str(root / "d.jsonl"), "--out", str(out), "--no-progress",
                 "--labels-field", "labels", "--segmentation-field", "seg"]) == 0  # fmt: skip
    if extra_cols:
        ds, meta = load_dataset_dir(out)
        ds = ds.add_column("evidence_mask", [[0.5]] * len(ds))
        save_dataset(ds, out, meta={"processor": {"family": "qwen2_vl"}}, overwrite=True)
    return out


def _augment(root: Path, ds: Path, *extra: str, out="aug") -> tuple:
    assert (
        main(["augment", "--dataset", str(ds), "--out", str(root / out), "--no-progress", *extra])
        == 0
    )
    return load_dataset_dir(root / out)


def _mask_bbox(seg, h, w):
    m = decode_segmentation(seg, h, w, "test", "segmentation")
    ys, xs = np.nonzero(m)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


@pytest.mark.slow
def test_scale_crop_pad_keeps_boxes_on_masks(tmp_path):
    recs = [[[5, 5, 20, 15], [22, 8, 38, 30]], [[0, 0, 40, 12]], [[10, 20, 30, 39]]]
    ds_dir = make_dataset(tmp_path, recs)
    ds, meta = _augment(tmp_path, ds_dir, "--pipeline", "scale_crop_pad", "--copies", "4", "--seed", "3",
                        "--keep-partial", "--min-visibility", "0.2")  # fmt: skip
    m = meta["augment"]
    assert m["copies_written"] == 3 * 4 and m["boxes_in"] == 4 * 4  # 4 boxes per round of copies
    assert m["boxes_in"] == m["boxes_out"] + m["boxes_dropped"]
    assert sum(len(r["boxes"]) for r in ds) == m["boxes_out"]
    worst = 0.0
    for r in ds:
        assert (r["width"], r["height"]) == (40, 40) == r["image"].size  # cropped back to size
        segs = r["segmentation"]  # one JSON text per box
        assert len(segs) == len(r["boxes"]) == len(r["box_labels"])
        for box, seg in zip(r["boxes"], segs, strict=True):
            assert 0 <= box[0] < box[2] <= 40 and 0 <= box[1] < box[3] <= 40
            worst = max(worst, float(np.abs(np.array(box) - _mask_bbox(seg, 40, 40)).max()))
    # box and transformed mask agree within 1 px (nearest-neighbour mask resampling)
    assert worst <= 1.0
    assert {r["id"].rsplit("-aug", 1)[1] for r in ds} == {"0", "1", "2", "3"}


def test_drops_and_clips_are_counted_by_hand(tmp_path, monkeypatch):
    import albumentations as A

    # deterministic crop to x in [0, 35): box A [30,10,40,20] keeps 5/10 of its width
    # (visibility 0.5) and is clipped to [30,10,35,20]; box B [36,0,40,5] is entirely cut
    # (visibility 0) and dropped; box C [0,0,10,10] is untouched.
    monkeypatch.setitem(
        augment.PIPELINES, "crop35", lambda w, h: [A.Crop(x_min=0, y_min=0, x_max=35, y_max=40)]
    )
    ds_dir = make_dataset(
        tmp_path, [[[30, 10, 40, 20], [36, 0, 40, 5], [0, 0, 10, 10]], [[0, 0, 10, 10]]]
    )
    ds, meta = _augment(tmp_path, ds_dir, "--pipeline", "crop35", "--keep-partial")
    m = meta["augment"]
    assert (m["boxes_in"], m["boxes_out"], m["boxes_dropped"], m["boxes_clipped"]) == (4, 3, 1, 1)
    r0 = ds[0]
    assert r0["image"].size == (35, 40) and (r0["width"], r0["height"]) == (35, 40)
    np.testing.assert_allclose(r0["boxes"], [[30, 10, 35, 20], [0, 0, 10, 10]])
    assert r0["box_labels"] == ["o0", "o2"]
    np.testing.assert_allclose(
        _mask_bbox(r0["segmentation"][0], 40, 35), [30, 10, 35, 20]
    )
    # without --keep-partial the copy that lost box B is discarded
    ds2, meta2 = _augment(tmp_path, ds_dir, "--pipeline", "crop35", out="aug2")
    assert meta2["augment"]["copies_discarded"] == 1 and ds2["id"] == [
        "d-2-aug0"
    ]  # ids: FILESTEM-LINE
    # min visibility 0.6 > 0.5 drops box A too
    _, meta3 = _augment(
        tmp_path,
        ds_dir,
        "--pipeline",
        "crop35",
        "--keep-partial",
        "--min-visibility",
        "0.6",
        out="a3",
    )
    assert meta3["augment"]["boxes_dropped"] == 2 and meta3["augment"]["boxes_clipped"] == 0


def test_photometric_is_seeded_and_leaves_geometry(tmp_path):
    ds_dir = make_dataset(tmp_path, [[[5, 5, 20, 15]], [[1, 2, 3, 4]]])
    a, _ = _augment(tmp_path, ds_dir, "--pipeline", "photometric", "--copies", "2", "--seed", "7",
                    "--include-original")  # fmt: skip
    b, _ = _augment(
        tmp_path, ds_dir, "--pipeline", "photometric", "--copies", "2", "--seed", "7", out="b"
    )
    assert a["id"] == ["d-1", "d-1-aug0", "d-1-aug1", "d-2", "d-2-aug0", "d-2-aug1"]
    assert a.filter(lambda r: "aug" in r["id"])["boxes"] == b["boxes"]
    np.testing.assert_allclose(a[1]["boxes"], [[5, 5, 20, 15]])  # unchanged geometry
    for x, y in zip(a.filter(lambda r: "aug" in r["id"]), b, strict=True):  # same seed, same pixels
        np.testing.assert_array_equal(np.asarray(x["image"]), np.asarray(y["image"]))


def test_flips_only_on_request_and_derived_columns_dropped(tmp_path, capsys):
    ds_dir = make_dataset(tmp_path, [[[0, 0, 10, 10]]], extra_cols=True)
    with pytest.warns(UserWarning, match="left/right"):
        ds, meta = _augment(
            tmp_path, ds_dir, "--pipeline", "photometric", "--allow-flips", "--copies", "6"
        )
    assert "evidence_mask" not in ds.column_names and "processor" not in meta
    assert "rebuild them with `visgrpo-data masks`" in capsys.readouterr().err
    flipped = [r["boxes"][0] for r in ds if r["boxes"][0][0] == 30]  # x -> 40 - x: [30, 0, 40, 10]
    kept = [r["boxes"][0] for r in ds if r["boxes"][0][0] == 0]
    assert len(flipped) + len(kept) == 6 and len(flipped) >= 1 and len(kept) >= 1  # seeded, p=0.5
    _, meta2 = _augment(tmp_path, ds_dir, "--pipeline", "scale_crop_pad", "--copies", "3", out="nf")
    assert meta2["augment"]["allow_flips"] is False


def test_bad_arguments(tmp_path):
    ds_dir = make_dataset(tmp_path, [[[0, 0, 10, 10]]])
    with pytest.raises(ValueError, match="unknown pipeline"):
        run_command(["augment", "--dataset", str(ds_dir), "--out", str(tmp_path / "aug"),
                     "--no-progress", "--pipeline", "rotate"])
    assert not (tmp_path / "aug").exists()
