"""convert coco: counts, boxes, labels and segmentations against pycocotools; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from data_tools.errors import RecordError
from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir

SIZES = {1: (32, 24), 2: (16, 16), 3: (20, 10)}  # image id -> (width, height)


def _rect_mask(h, w, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths of the column-major flattening, starting with zeros."""
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(m.shape), "counts": counts}


def make_coco(root: Path) -> tuple[Path, Path]:
    """Three tiny images, five annotations (polygon, uncompressed and compressed RLE)."""
    images = []
    for iid, (w, h) in SIZES.items():
        Image.new("RGB", (w, h), (iid * 60, 0, 0)).save(root / f"{iid}.png")
        images.append({"id": iid, "file_name": f"{iid}.png", "width": w, "height": h})
    rle_c = mask_utils.encode(np.asfortranarray(_rect_mask(16, 16, 1, 1, 4, 4)))
    rle_c["counts"] = rle_c["counts"].decode()
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 5], "area": 50, "iscrowd": 0,
         "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [0, 0, 32, 24], "area": 768, "iscrowd": 0,
         "segmentation": [[0, 0, 32, 0, 32, 24, 0, 24]]},
        {"id": 12, "image_id": 2, "category_id": 3, "bbox": [4, 4, 8, 6], "area": 48, "iscrowd": 1,
         "segmentation": _uncompressed_rle(_rect_mask(16, 16, 4, 4, 12, 10))},
        {"id": 13, "image_id": 2, "category_id": 1, "bbox": [1, 1, 3, 3], "area": 9, "iscrowd": 0,
         "segmentation": rle_c},
        {"id": 14, "image_id": 3, "category_id": 2, "bbox": [0.5, 0.5, 4.25, 4.5], "area": 19, "iscrowd": 0,
         "segmentation": [[0.5, 0.5, 4.75, 0.5, 4.75, 5, 0.5, 5]]},
    ]  # fmt: skip
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cup"}]
    inst = root / "instances.json"
    inst.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    questions = [
        {"id": "q1", "image_id": 1, "question": "Which animals?", "answer": "cat and dog", "ann_ids": [10, 11]},
        {"id": "q2", "image_id": 1, "question": "What is big?", "answer": "dog", "ann_ids": [11]},
        {"id": "q3", "image_id": 2, "question": "What is there?", "answer": "B", "answer_type": "choice",
         "ann_ids": [12, 13]},
        {"image_id": 3, "question": "How many dogs?", "answer": 1, "answer_type": "number", "ann_ids": [14]},
        {"id": "q5", "image_id": 3, "question": "Is it dark?", "answer": "yes", "ann_ids": []},
    ]  # fmt: skip
    qpath = root / "questions.jsonl"
    qpath.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return inst, qpath


def _run(root: Path, inst: Path, qpath: Path, *extra: str) -> int:
    return run_command(["convert", "coco", "--instances", str(inst), "--questions", str(qpath),
                 "--image-root", str(root), "--out", str(root / "out"), "--no-progress", *extra])  # fmt: skip


def _decode(seg, h, w) -> np.ndarray:
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
    if isinstance(seg["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
    return mask_utils.decode(seg)


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_counts_boxes_labels_and_masks_match_pycocotools(tmp_path, fmt):
    inst, qpath = make_coco(tmp_path)
    assert _run(tmp_path, inst, qpath, "--format", fmt) == 0
    ds, meta = load_dataset_dir(tmp_path / "out")
    coco = COCO(str(inst))
    questions = [json.loads(line) for line in qpath.read_text().splitlines()]
    assert len(ds) == len(questions) == 5
    assert ds["id"] == ["q1", "q2", "q3", "coco-3-3", "q5"]
    for rec, q in zip(ds, questions, strict=True):
        anns = coco.loadAnns(q["ann_ids"])
        img = coco.loadImgs(q["image_id"])[0]
        assert (rec["width"], rec["height"]) == (img["width"], img["height"]) == rec["image"].size
        assert len(rec["boxes"]) == len(q["ann_ids"])
        expected = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        np.testing.assert_allclose(np.reshape(rec["boxes"], (-1, 4)), np.reshape(expected, (-1, 4)))
        assert rec["box_labels"] == [coco.loadCats(a["category_id"])[0]["name"] for a in anns]
        segs = [json.loads(s) for s in rec["segmentation"]]  # one JSON text per box
        assert len(segs) == len(anns)
        for seg, ann in zip(segs, anns, strict=True):
            np.testing.assert_array_equal(
                _decode(seg, img["height"], img["width"]), coco.annToMask(ann)
            )
    assert (
        ds[2]["answer_type"] == "choice"
        and ds[3]["answer"] == "1"
        and ds[0]["answer_type"] == "text"
    )
    # hand check of one box: bbox [0.5, 0.5, 4.25, 4.5] -> [0.5, 0.5, 4.75, 5.0]
    np.testing.assert_allclose(ds[3]["boxes"], [[0.5, 0.5, 4.75, 5.0]])
    assert meta["convert"]["records"] == 5


def test_json_list_questions_and_no_segmentation(tmp_path):
    inst, qpath = make_coco(tmp_path)
    qjson = tmp_path / "questions.json"
    qjson.write_text(json.dumps([json.loads(line) for line in qpath.read_text().splitlines()][:2]))
    assert _run(tmp_path, inst, qjson, "--no-segmentation") == 0
    ds, _ = load_dataset_dir(tmp_path / "out")
    assert len(ds) == 2 and "segmentation" not in ds.column_names


def _bad(tmp_path, mutate, *extra) -> RecordError:
    inst, qpath = make_coco(tmp_path)
    qs = [json.loads(line) for line in qpath.read_text().splitlines()]
    mutate(qs, tmp_path)
    qpath.write_text("".join((q if isinstance(q, str) else json.dumps(q)) + "\n" for q in qs))
    with pytest.raises(RecordError) as e:
        _run(tmp_path, inst, qpath, *extra)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return e.value


def test_unknown_annotation_names_line_and_field(tmp_path):
    err = _bad(tmp_path, lambda qs, _: qs[1].update(ann_ids=[11, 999]))
    assert err.where.endswith("questions.jsonl:2 (id=q2)") and err.field == "ann_ids[1]"
    assert "999" in err.reason


def test_annotation_of_another_image(tmp_path):
    err = _bad(tmp_path, lambda qs, _: qs[0].update(ann_ids=[12]))
    assert err.field == "ann_ids[0]" and "belongs to image 2, not 1" in err.reason


def test_unknown_image_and_size_mismatch_and_missing_file(tmp_path):
    err = _bad(tmp_path, lambda qs, _: qs[4].update(image_id=77))
    assert err.field == "image_id" and "(id=q5)" in err.where
    sub = tmp_path / "b"
    sub.mkdir()
    err = _bad(sub, lambda qs, root: Image.new("RGB", (5, 5)).save(root / "3.png"))
    assert err.field == "image" and "5x5, expected 20x10" in err.reason
    sub = tmp_path / "c"
    sub.mkdir()
    err = _bad(sub, lambda qs, root: (root / "2.png").unlink())
    assert err.field == "image" and "not found" in err.reason and "(id=q3)" in err.where


def test_malformed_line_and_bad_bbox(tmp_path):
    err = _bad(tmp_path, lambda qs, _: qs.insert(2, '{"id": "x", '))
    assert err.where.endswith("questions.jsonl:3") and "malformed JSON" in err.reason
    sub = tmp_path / "b"
    sub.mkdir()

    def bad_box(qs, root):
        inst = json.loads((root / "instances.json").read_text())
        inst["annotations"][0]["bbox"] = [30, 3, 10, 5]  # x1 = 40 > 32 + 1
        (root / "instances.json").write_text(json.dumps(inst))

    err = _bad(sub, bad_box)
    assert err.field == "boxes[0]" and "out of bounds" in err.reason and "(id=q1)" in err.where


def test_skip_report(tmp_path):
    inst, qpath = make_coco(tmp_path)
    qs = [json.loads(line) for line in qpath.read_text().splitlines()]
    qs[0]["ann_ids"] = [404]
    qs[2]["ann_ids"] = [12, 405]
    qs[3]["answer_type"] = "essay"
    qpath.write_text("".join(json.dumps(q) + "\n" for q in qs))
    assert _run(tmp_path, inst, qpath, "--on-error", "skip") == 0
    ds, _ = load_dataset_dir(tmp_path / "out")
    assert ds["id"] == ["q2", "q5"]
    report = json.loads((tmp_path / "out.errors.json").read_text())
    assert report["processed"] == 5 and report["skipped"] == 3
    counts = {r["reason"]: r["count"] for r in report["reasons"]}
    assert counts == {"ann_ids[]: annotation id not in the instances file": 2,
                      "answer_type: unknown answer type": 1}  # fmt: skip
