"""convert refcoco: one record per sentence / per ref, box answer text, split filter, pickles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools.errors import RecordError
from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir


def make_refcoco(root: Path) -> tuple[Path, list[dict]]:
    Image.new("RGB", (30, 20)).save(root / "a.jpg")
    Image.new("RGB", (12, 12)).save(root / "b.jpg")
    inst = {
        "images": [{"id": 5, "file_name": "a.jpg", "width": 30, "height": 20},
                   {"id": 6, "file_name": "b.jpg", "width": 12, "height": 12}],
        "annotations": [
            {"id": 50, "image_id": 5, "category_id": 1, "bbox": [3.25, 2, 10, 8], "area": 80, "iscrowd": 0,
             "segmentation": [[3.25, 2, 13.25, 2, 13.25, 10, 3.25, 10]]},
            {"id": 60, "image_id": 6, "category_id": 2, "bbox": [0, 0, 12, 6], "area": 72, "iscrowd": 0,
             "segmentation": [[0, 0, 12, 0, 12, 6, 0, 6]]},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
    }  # fmt: skip
    (root / "instances.json").write_text(json.dumps(inst))
    refs = [
        {"ref_id": 0, "image_id": 5, "ann_id": 50, "split": "train",
         "sentences": [{"sent": "man on the left"}, {"sent": "left guy", "raw": "Left guy"}]},
        {"ref_id": 1, "image_id": 6, "ann_id": 60, "split": "val", "sentences": [{"sent": "red car"}]},
    ]  # fmt: skip
    return root / "instances.json", refs


def _run(root: Path, refs_path: Path, *extra: str) -> int:
    return run_command(["convert", "refcoco", "--refs", str(refs_path), "--instances", str(root / "instances.json"),
                 "--image-root", str(root), "--out", str(root / "out"), "--no-progress", *extra])  # fmt: skip


def test_per_sentence_records(tmp_path):
    _, refs = make_refcoco(tmp_path)
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(refs))
    assert _run(tmp_path, path, "--template", "Locate: {expression}") == 0
    ds, meta = load_dataset_dir(tmp_path / "out")
    assert ds["id"] == ["refcoco-0-0", "refcoco-0-1", "refcoco-1-0"]  # 2 + 1 sentences
    assert ds["question"] == ["Locate: man on the left", "Locate: left guy", "Locate: red car"]
    # bbox xywh [3.25, 2, 10, 8] -> xyxy [3.25, 2, 13.25, 10] in original pixels
    assert ds[0]["answer"] == "[3.25, 2, 13.25, 10]" and ds[0]["answer_type"] == "box"
    np.testing.assert_allclose(ds[0]["boxes"], [[3.25, 2, 13.25, 10]])
    assert ds[2]["answer"] == "[0, 0, 12, 6]" and ds[2]["box_labels"] == ["car"]
    assert [json.loads(s) for s in ds[0]["segmentation"]] == [[[3.25, 2.0, 13.25, 2.0, 13.25, 10.0, 3.25, 10.0]]]
    assert ds[0]["image"].size == (30, 20) and ds["source"] == ["refcoco"] * 3
    assert meta["convert"]["refs_kept"] == 2


def test_per_ref_split_and_jsonl(tmp_path):
    _, refs = make_refcoco(tmp_path)
    path = tmp_path / "refs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in refs))
    assert _run(tmp_path, path, "--per", "ref", "--split", "train") == 0
    ds, _ = load_dataset_dir(tmp_path / "out")
    assert ds["id"] == ["refcoco-0"] and "man on the left" in ds[0]["question"]


def test_bad_refs(tmp_path):
    _, refs = make_refcoco(tmp_path)
    refs[1]["ann_id"] = 61
    path = tmp_path / "refs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in refs))
    with pytest.raises(RecordError) as e:
        _run(tmp_path, path)
    assert e.value.where.endswith("refs.jsonl:2 (ref_id=1)") and e.value.field == "ann_id"
    assert not (tmp_path / "out").exists()
    refs[1]["ann_id"], refs[1]["sentences"] = 60, []
    path.write_text("".join(json.dumps(r) + "\n" for r in refs))
    assert _run(tmp_path, path, "--on-error", "skip") == 0
    report = json.loads((tmp_path / "out.errors.json").read_text())
    assert report["skipped"] == 1 and report["reasons"][0]["reason"].startswith(
        "sentences: expected"
    )
    with pytest.raises(ValueError, match="must contain"):
        _run(tmp_path, path, "--template", "no placeholder", "--overwrite")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickles_need_flag_and_are_plain_data_only(tmp_path):
    _, refs = make_refcoco(tmp_path)
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError, match="--allow-pickle"):
        _run(tmp_path, path)
    assert _run(tmp_path, path, "--allow-pickle") == 0
    assert len(load_dataset_dir(tmp_path / "out")[0]) == 3
    path.write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(ValueError, match="cannot read the refs pickle: .*refusing to load global builtins.print"):
        _run(tmp_path, path, "--allow-pickle", "--overwrite")
