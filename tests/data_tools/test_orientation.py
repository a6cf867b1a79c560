"""One orientation rule: EXIF-rotated JPEGs give boxes, evidence masks and training pixels
in one frame (convert -> masks -> the training decode), for orientations 3, 6 and 8.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir
from visgrpo.lightning.datamodule import undecoded_images
from visgrpo.rollout.prompts import row_images

CELL = 28  # qwen2_5_vl: patch 14 x merge 2 pixels per merged token
# raw stored pixels for orientation o: exif_transpose undoes this transpose
TO_RAW = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def _upright(w: int, h: int) -> tuple[Image.Image, list[float]]:
    """Grey image with a red block in the top-right 2x1 cells; its xyxy box."""
    im = Image.new("RGB", (w, h), (128, 128, 128))
    box = [w - 2 * CELL, 0, w, CELL]
    im.paste((230, 20, 20), tuple(box))
    return im, [float(v) for v in box]


def _tagged_jpeg(upright: Image.Image, orientation: int) -> bytes:
    raw = upright.transpose(TO_RAW[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    raw.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as check:  # the fixture itself: PIL turns it upright
        assert ImageOps.exif_transpose(check).size == upright.size
    return data


def _convert_and_mask(tmp_path, data: bytes, box, *extra) -> dict:
    (tmp_path / "a.jpg").write_bytes(data)
    row = {"image": "a.jpg", "question": "q", "answer": "a", "boxes": [box]}
    (tmp_path / "d.jsonl").write_text(json.dumps(row) + "\n")
    conv, masked = tmp_path / "conv", tmp_path / "masked"
    argv = ["convert", "jsonl", "--input", str(tmp_path / "d.jsonl"), "--out", str(conv),
            "--no-progress", *extra]  # fmt: skip
    assert run_command(argv) == 0
    assert run_command(["masks", "--dataset", str(conv), "--out", str(masked),
                        "--processor", "qwen2_5_vl", "--no-progress"]) == 0  # fmt: skip
    ds, _ = load_dataset_dir(masked)
    return undecoded_images(ds)[0]


def _red_cells(im: Image.Image) -> np.ndarray:
    """Fraction of red pixels per 28x28 cell of the decoded image: [th * tw]."""
    a = np.asarray(im).astype(int)  # [H, W, 3]
    red = (a[..., 0] > 180) & (a[..., 1] < 90)
    th, tw = a.shape[0] // CELL, a.shape[1] // CELL
    return red.reshape(th, CELL, tw, CELL).mean(axis=(1, 3)).reshape(-1)


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("size", [(112, 112), (168, 112)], ids=["square", "wide"])
def test_mask_covers_the_object_the_processor_sees(tmp_path, orientation, size):
    upright, box = _upright(*size)
    row = _convert_and_mask(tmp_path, _tagged_jpeg(upright, orientation), box)
    assert (row["width"], row["height"]) == size  # upright size stored, not the header's
    (im,) = row_images(row)  # the training decode
    assert im.size == size
    th, tw = size[1] // CELL, size[0] // CELL
    assert row["grid_thw"] == [[1, 2 * th, 2 * tw]]
    red = _red_cells(im)  # [th * tw]
    mask = np.asarray(row["evidence_mask"])  # [th * tw]
    np.testing.assert_allclose(mask, (red > 0.5).astype(float))  # box on cells exactly
    assert red[mask == 1].min() > 0.9 and red[mask == 0].max() < 0.1  # object where the mask is
    stored = Image.open(io.BytesIO(row["image"]["bytes"]))
    assert stored.format == "PNG" and 0x0112 not in stored.getexif()  # no tag left to re-apply


def test_exif_ignore_keeps_the_raw_frame(tmp_path):
    upright, _ = _upright(168, 112)
    data = _tagged_jpeg(upright, 6)  # raw pixels are 112 x 168 (portrait)
    raw = Image.open(io.BytesIO(data))
    box = [0.0, 0.0, float(CELL), 2.0 * CELL]  # where the red block is in the raw pixels
    assert _red_cells(raw.convert("RGB"))[[0, 4]].min() > 0.9
    row = _convert_and_mask(tmp_path, data, box, "--exif", "ignore")
    assert (row["width"], row["height"]) == (112, 168)
    (im,) = row_images(row)
    red, mask = _red_cells(im), np.asarray(row["evidence_mask"])
    np.testing.assert_allclose(mask, (red > 0.5).astype(float))


def test_untagged_image_bytes_are_kept(tmp_path):
    upright, box = _upright(112, 112)
    buf = io.BytesIO()
    upright.save(buf, format="JPEG", quality=90)
    row = _convert_and_mask(tmp_path, buf.getvalue(), box)
    assert row["image"]["bytes"] == buf.getvalue()  # orientation 1: byte for byte


def test_legacy_rotated_dataset_is_refused_by_the_training_decode(tmp_path):
    upright, _ = _upright(168, 112)
    data = _tagged_jpeg(upright, 6)
    row = {"id": "old", "image": {"bytes": data, "path": "a.jpg"}, "width": 112, "height": 168}
    with pytest.raises(ValueError, match=r"record 'old': field 'image': upright image is 168x112"):
        row_images(row)
