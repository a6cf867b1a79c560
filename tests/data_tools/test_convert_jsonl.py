"""convert jsonl: field mapping, box formats, bad input naming file:line and field, skip reports,
atomic output, parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools.errors import RecordError
from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir


def _png(path: Path, size=(40, 20), colour=(200, 30, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def _jsonl(path: Path, rows) -> Path:
    with path.open("w") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def _run(tmp_path: Path, jsonl: Path, *extra: str, out: str = "out") -> int:
    return run_command(
        [
            "convert",
            "jsonl",
            "--input",
            str(jsonl),
            "--out",
            str(tmp_path / out),
            "--no-progress",
            *extra,
        ]
    )


def _good(i=0, **over):
    row = {
        "img": "a.png",
        "q": f"what {i}?",
        "a": "red",
        "bb": [[0.25, 0.5, 0.5, 0.5]],
        "key": f"r{i}",
    }
    row.update(over)
    return row


MAP = ["--image-field", "img", "--question-field", "q", "--answer-field", "a", "--boxes-field", "bb",
       "--id-field", "key", "--box-format", "cxcywh-unit"]  # fmt: skip


def test_field_mapping_formats_and_embedded_images(tmp_path):
    _png(tmp_path / "a.png", (40, 20))
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "sub" / "b.png", (10, 30), (0, 0, 255))
    rows = [
        {**_good(0), "meta": {"t": "text"}, "lab": ["cup"]},
        {"img": "sub/b.png", "q": "how many?", "a": 2, "bb": [[0.5, 0.5, 1.0, 0.2], [0.2, 0.2, 0.2, 0.2]],
         "key": "r1", "meta": {"t": "number"}, "lab": ["x", "y"]},
    ]  # fmt: skip
    src = _jsonl(tmp_path / "d.jsonl", rows)
    rc = _run(tmp_path, src, *MAP, "--labels-field", "lab", "--answer-type-field", "meta.t")
    assert rc == 0
    (tmp_path / "a.png").unlink()  # images are embedded: the dataset no longer needs the files
    ds, meta = load_dataset_dir(tmp_path / "out")
    assert len(ds) == 2 and ds["id"] == ["r0", "r1"]
    r0, r1 = ds[0], ds[1]
    # record 0: 40x20 image, cxcywh-unit [0.25, 0.5, 0.5, 0.5] -> x 0.0..0.5 -> 0..20, y 0.25..0.75 -> 5..15
    assert (r0["width"], r0["height"]) == (40, 20)
    np.testing.assert_allclose(r0["boxes"], [[0, 5, 20, 15]])
    assert r0["box_labels"] == ["cup"] and r0["answer_type"] == "text" and r0["answer"] == "red"
    assert r0["image"].size == (40, 20) and r0["image"].getpixel((0, 0)) == (200, 30, 30)
    # record 1: 10x30, box0 cx 0.5 w 1.0 -> 0..10; cy 0.5 h 0.2 -> 0.4..0.6 -> 12..18
    #           box1 cx 0.2 w 0.2 -> 0.1..0.3 -> 1..3; cy 0.2 h 0.2 -> 0.1..0.3 -> 3..9
    np.testing.assert_allclose(r1["boxes"], [[0, 12, 10, 18], [1, 3, 3, 9]], atol=1e-5)
    assert r1["answer"] == "2" and r1["answer_type"] == "number" and r1["source"] == "jsonl"
    assert meta["convert"]["records"] == 2 and meta["convert"]["box_format"] == "cxcywh-unit"
    assert "segmentation" not in ds.column_names


def test_parquet_output_loads_and_is_self_contained(tmp_path):
    _png(tmp_path / "a.png", (40, 20))
    src = _jsonl(tmp_path / "d.jsonl", [_good(0), _good(1)])
    assert _run(tmp_path, src, *MAP, "--format", "parquet", "--answer-type", "text") == 0
    assert (tmp_path / "out" / "data.parquet").is_file()
    (tmp_path / "a.png").unlink()
    ds, _ = load_dataset_dir(tmp_path / "out")
    assert len(ds) == 2 and ds[1]["image"].size == (40, 20)
    np.testing.assert_allclose(ds[1]["boxes"], [[0, 5, 20, 15]])


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name.startswith("out")
    )


def _raises(tmp_path, rows, *extra, make_images=True) -> RecordError:
    if make_images:
        _png(tmp_path / "a.png", (40, 20))
    src = _jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(RecordError) as e:
        _run(tmp_path, src, *MAP, *extra)
    assert _leftovers(tmp_path) == []  # no partial output, no temporary directories
    return e.value


def test_malformed_json_line_names_file_and_line(tmp_path):
    err = _raises(tmp_path, [_good(0), "", '{"img": "a.png", "q": ', _good(1)])
    assert f"{tmp_path / 'd.jsonl'}:3" in str(err) and "malformed JSON" in str(err)
    err = _raises(tmp_path, [_good(0), "[1, 2]"])
    assert err.where.endswith("d.jsonl:2") and "expected a JSON object" in err.reason


def test_missing_image_names_record_and_field(tmp_path):
    err = _raises(tmp_path, [_good(0), _good(1, img="nope.png")])
    assert err.where.endswith("d.jsonl:2 (id=r1)") and err.field == "img"
    assert "image file not found" in err.reason and "nope.png" in err.reason


def test_corrupt_images_name_record_and_field(tmp_path):
    _png(tmp_path / "a.png", (40, 20))
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) - 20])  # header fine, data cut
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    err = _raises(tmp_path, [_good(0, img="trunc.png")], make_images=False)
    assert err.field == "img" and "corrupt" in err.reason and "(id=r0)" in err.where
    err = _raises(tmp_path, [_good(0, img="junk.png")], make_images=False)
    assert "not a recognised image format" in err.reason


@pytest.mark.parametrize(
    ("bb", "field", "needle"),
    [
        ([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, "NaN"]], "bb[1]", "non-finite"),
        ([[0.5, 0.5, 0.2, -0.2]], "bb[0]", "inverted"),  # negative height -> y1 < y0
        ([[0.5, 0.5, 0.0, 0.2]], "bb[0]", "zero-area"),
        ([[0.9, 0.5, 0.4, 0.2]], "bb[0]", "out of bounds"),  # x1 = 1.1 * 40 = 44 > 40 + 1
        ([[0.5, 0.5, 0.2]], "bb[0]", "expected 4 numbers"),
    ],
)
def test_bad_boxes_name_line_id_and_field(tmp_path, bb, field, needle):
    bb = [[float(v) if v == "NaN" else v for v in b] for b in bb]  # json.dumps writes NaN
    err = _raises(tmp_path, [_good(0), _good(1, bb=bb)])
    assert err.where.endswith("d.jsonl:2 (id=r1)") and err.field == field and needle in err.reason


def test_unknown_box_format(tmp_path):
    src = _jsonl(tmp_path / "d.jsonl", [_good(0)])
    _png(tmp_path / "a.png")
    with pytest.raises(RecordError, match="unknown box format 'yolo'"):
        _run(tmp_path, src, *MAP[:-1], "yolo")
    err = _raises(tmp_path, [_good(0), _good(1, fmt="ltrb")], "--box-format-field", "fmt")
    assert (
        err.where.endswith(":2 (id=r1)")
        and err.field == "fmt"
        and "unknown box format 'ltrb'" in err.reason
    )


def test_clip_boxes_and_duplicate_ids(tmp_path):
    _png(tmp_path / "a.png", (40, 20))
    src = _jsonl(tmp_path / "d.jsonl", [_good(0, bb=[[0.9, 0.5, 0.4, 0.2]])])
    assert _run(tmp_path, src, *MAP, "--clip-boxes") == 0
    ds, _ = load_dataset_dir(tmp_path / "out")
    # x 0.7..1.1 -> 28..44, clipped to 40; y 0.4..0.6 -> 8..12
    np.testing.assert_allclose(ds[0]["boxes"], [[28, 8, 40, 12]], atol=1e-5)
    sub = tmp_path / "dup"
    sub.mkdir()
    err = _raises(sub, [_good(0), _good(0)])
    assert err.field == "key" and "duplicate id 'r0'" in err.reason


def test_skip_reports_counts_and_reasons(tmp_path, capsys):
    _png(tmp_path / "a.png", (40, 20))
    rows = [_good(0), "{oops", _good(2, img="m1.png"), _good(3, img="m2.png"),
            _good(4, bb=[[0.5, 0.5, 0.0, 0.1]]), _good(5)]  # fmt: skip
    src = _jsonl(tmp_path / "d.jsonl", rows)
    assert _run(tmp_path, src, *MAP, "--on-error", "skip") == 0
    ds, meta = load_dataset_dir(tmp_path / "out")
    assert ds["id"] == ["r0", "r5"]
    report = json.loads((tmp_path / "out.errors.json").read_text())
    assert report["processed"] == 6 and report["skipped"] == 4
    counts = {r["reason"]: r["count"] for r in report["reasons"]}
    assert counts == {
        "img: image file not found": 2,
        "<line>: malformed JSON": 1,
        "bb[]: zero-area box": 1,
    }
    missing = next(r for r in report["reasons"] if r["count"] == 2)
    assert any("d.jsonl:3 (id=r2)" in ex and "m1.png" in ex for ex in missing["examples"])
    assert meta["convert"]["skipped"] == 4
    assert "4 of 6 records skipped" in capsys.readouterr().err


def test_all_skipped_writes_report_but_no_dataset(tmp_path):
    src = _jsonl(tmp_path / "d.jsonl", [_good(0, img="x.png")])
    assert _run(tmp_path, src, *MAP, "--on-error", "skip") == 1
    assert not (tmp_path / "out").exists()
    assert json.loads((tmp_path / "out.errors.json").read_text())["skipped"] == 1


def test_existing_output_needs_overwrite(tmp_path):
    _png(tmp_path / "a.png", (40, 20))
    src = _jsonl(tmp_path / "d.jsonl", [_good(0)])
    assert _run(tmp_path, src, *MAP) == 0
    with pytest.raises(FileExistsError):
        _run(tmp_path, src, *MAP)
    _jsonl(src, [_good(0), _good(1)])
    assert _run(tmp_path, src, *MAP, "--overwrite") == 0
    assert len(load_dataset_dir(tmp_path / "out")[0]) == 2


def test_segmentation_field_and_box_answer(tmp_path):
    _png(tmp_path / "a.png", (40, 20))
    poly = [[0, 5, 20, 5, 20, 15, 0, 15]]
    rows = [_good(0, seg=[poly], a=[0.25, 0.5, 0.5, 0.5]), _good(1, bb=[], a="none")]
    src = _jsonl(tmp_path / "d.jsonl", rows)
    assert _run(tmp_path, src, *MAP, "--segmentation-field", "seg", "--answer-type", "box") == 0
    ds, _ = load_dataset_dir(tmp_path / "out")
    assert [json.loads(s) for s in ds[0]["segmentation"]] == [[[0.0, 5.0, 20.0, 5.0, 20.0, 15.0, 0.0, 15.0]]]
    assert ds[0]["answer"] == "[0, 5, 20, 15]"  # the box answer, converted to pixels
    assert ds[1]["segmentation"] == [] and ds[1]["boxes"] == []  # one entry per box
    sub = tmp_path / "bad"
    sub.mkdir()
    err = _raises(sub, [_good(0, seg=[[[1, 2, 3]]])], "--segmentation-field", "seg")
    assert err.field == "seg[0][0]" and "polygon" in err.reason
