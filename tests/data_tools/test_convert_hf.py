"""``visgrpo-data convert hf`` on fixtures in the exact schemas of ViRL39K, Geometry3K and
TRL-style datasets, plus an explicit column mapping with boxes.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_tools.errors import RecordError
from tests.data_tools.conftest import run_command
from visgrpo.data.io import load_dataset_dir


def png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def convert(tmp_path, *args):
    out = tmp_path / "out"
    assert run_command(["convert", "hf", *args, "--out", str(out), "--no-progress"]) == 0
    ds, meta = load_dataset_dir(out)
    return ds, meta


def virl39k(root):
    (root / "images").mkdir(parents=True)
    for name, (w, h) in {"a.png": (64, 48), "b.png": (32, 32), "c.png": (40, 80)}.items():
        (root / "images" / name).write_bytes(png(w, h))
    rows = [
        {"qid": "q-1", "question": "<image>What is x?", "answer": "\\boxed{4}",
         "PassRate_32BTrained": 0.5, "PassRate_7BTrained": 0.25, "category": "(GradeSchool) Geometric",
         "source": "geoqa", "image": ["images/a.png"]},
        {"qid": "q-2", "question": "<image><image>Which image is larger? A. first B. second",
         "answer": "\\boxed{B}", "PassRate_32BTrained": 1.0, "PassRate_7BTrained": 0.75,
         "category": "(GradeSchool) Non-Geo Math", "source": "x", "image": ["images/b.png", "images/c.png"]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "39Krelease.parquet")


def test_virl39k_multi_image_without_boxes(tmp_path, capsys):
    virl39k(tmp_path / "virl")
    ds, meta = convert(tmp_path, "--input", str(tmp_path / "virl"), "--preset", "virl39k")
    assert "images" in ds.column_names and "image" not in ds.column_names
    a, b = ds[0], ds[1]
    assert (a["id"], a["question"], a["answer"], a["answer_type"]) == ("q-1", "What is x?", "4", "number")
    assert (b["question"], b["answer"], b["answer_type"]) == (
        "Which image is larger? A. first B. second", "B", "choice")
    assert [im.size for im in b["images"]] == [(32, 32), (40, 80)]
    assert (b["width"], b["height"], b["boxes"], b["box_image"]) == ([32, 40], [32, 80], [], [])
    assert meta["convert"]["multi_image"] and meta["convert"]["records_without_boxes"] == 2
    err = capsys.readouterr().err
    assert "2 of 2 records have no evidence boxes (first: record 'q-1')" in err and "EASE" in err
    # the output is a valid multi-image evidence dataset: masks builds its token grids
    assert run_command(["masks", "--dataset", str(tmp_path / "out"), "--out", str(tmp_path / "m"),
                        "--processor", "qwen2_5_vl", "--no-progress"]) == 0
    masked, _ = load_dataset_dir(tmp_path / "m")
    assert len(masked[1]["grid_thw"]) == 2
    err = capsys.readouterr().err
    assert "masks: 2 records of" in err and "(first: record 'q-1')" in err and "EASE target is uniform" in err


def test_geometry3k_save_to_disk(tmp_path):
    import datasets

    feats = datasets.Features({"images": datasets.List(datasets.Image()),
                               "problem": datasets.Value("string"), "answer": datasets.Value("string")})
    rows = {"images": [[Image.new("RGB", (50, 30))], [Image.new("RGB", (30, 50))]],
            "problem": ["<image>Find x. Round to the nearest tenth.", "<image>Find the area."],
            "answer": ["7.5", "3\\sqrt{2}"]}
    split = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict({"train": split, "test": split.select([0])}).save_to_disk(str(tmp_path / "g3k"))
    ds, _ = convert(tmp_path, "--input", str(tmp_path / "g3k"), "--preset", "geometry3k",
                    "--split", "train", "--format", "parquet")
    assert "image" in ds.column_names and len(ds) == 2
    assert [r["question"] for r in ds] == ["Find x. Round to the nearest tenth.", "Find the area."]
    assert [(r["answer"], r["answer_type"], r["id"]) for r in ds] == [
        ("7.5", "number", "0"), ("3\\sqrt{2}", "number", "1")]
    assert [(r["width"], r["height"]) for r in ds] == [(50, 30), (30, 50)]


def test_trl_chat_prompts_and_tagged_solutions(tmp_path):
    (tmp_path / "trl").mkdir()
    (tmp_path / "trl" / "cat.png").write_bytes(png(20, 30))
    rows = [{"prompt": [{"role": "system", "content": "Think first."},
                        {"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": "What animal is it?"}]}],
             "image": "cat.png", "solution": "<think>fur</think><answer>a cat</answer>"}]
    (tmp_path / "trl" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds, _ = convert(tmp_path, "--input", str(tmp_path / "trl" / "train.jsonl"), "--preset", "trl")
    r = ds[0]
    assert (r["question"], r["answer"], r["answer_type"]) == ("What animal is it?", "a cat", "text")
    assert r["image"].size == (20, 30)


def test_column_mapping_with_embedded_images_and_boxes(tmp_path):
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("uid", pa.string()), ("q", pa.string()), ("a", pa.string()),
                        ("img", image), ("bbox", pa.list_(pa.list_(pa.float64()))), ("kind", pa.string())])
    rows = [{"uid": "r1", "q": "Where is the dog?", "a": "left", "img": {"bytes": png(100, 50), "path": "x.png"},
             "bbox": [[10, 5, 20, 10]], "kind": "text"}]
    path = tmp_path / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    ds, _ = convert(tmp_path, "--input", str(tmp_path / "data"), "--box-format", "xywh",
                    "--columns", "id=uid,question=q,answer=a,image=img,boxes=bbox,answer_type=kind")
    r = ds[0]
    assert (r["id"], r["answer_type"], r["boxes"], r["box_labels"]) == ("r1", "text", [[10, 5, 30, 15]], [""])


def test_bad_rows_name_record_and_column(tmp_path):
    virl39k(tmp_path / "virl")
    table = pq.read_table(tmp_path / "virl" / "39Krelease.parquet").to_pylist()
    table[1]["question"] = "<image>Only one marker"
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "virl" / "39Krelease.parquet")
    with pytest.raises(RecordError, match=r"row 1 \(id=q-2\).*question.*1 <image> markers for 2 images"):
        convert(tmp_path, "--input", str(tmp_path / "virl"), "--preset", "virl39k")
    with pytest.raises(ValueError, match="no column 'problem'; columns: qid"):
        convert(tmp_path, "--input", str(tmp_path / "virl"), "--preset", "geometry3k", "--overwrite")
    with pytest.raises(ValueError, match="expected KEY=COLUMN"):
        convert(tmp_path, "--input", str(tmp_path / "virl"), "--columns", "prompt=question")


def _embedded(tmp_path, data: bytes) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("q", pa.string()), ("a", pa.string()), ("img", image)])
    path = tmp_path / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{"q": "Colour?", "a": "red", "img": {"bytes": data, "path": "x.jpg"}}],
                                        schema=schema), path)


def test_embedded_bytes_take_the_file_checks(tmp_path):
    # EXIF orientation 6 (rotate 90): the raw frame is 60x20, the upright image 20x60.
    raw = Image.new("RGB", (60, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    raw.save(buf, format="JPEG", exif=exif.tobytes())
    _embedded(tmp_path, buf.getvalue())
    ds, _ = convert(tmp_path, "--input", str(tmp_path / "data"), "--columns", "question=q,answer=a,image=img")
    r = ds[0]
    assert (r["width"], r["height"]) == (20, 60) and r["image"].size == (20, 60)
    ds, _ = convert(tmp_path, "--input", str(tmp_path / "data"), "--columns", "question=q,answer=a,image=img",
                    "--exif", "ignore", "--overwrite")
    assert (ds[0]["width"], ds[0]["height"]) == (60, 20)
    # the pixel limit applies to embedded bytes too, from the header, naming the row and column
    _embedded(tmp_path, png(300, 300))
    with pytest.raises(RecordError, match=r"row 0.*img\[0\].*image too large"):
        convert(tmp_path, "--input", str(tmp_path / "data"), "--columns", "question=q,answer=a,image=img",
                "--max-image-pixels", "10000", "--overwrite")


def test_image_paths_stay_under_the_image_root(tmp_path):
    (tmp_path / "outside.png").write_bytes(png(8, 8))
    (tmp_path / "data").mkdir()
    rows = [{"q": "Colour?", "a": "green", "img": "../outside.png"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "train-00000-of-00001.parquet")
    args = ["--input", str(tmp_path / "data"), "--columns", "question=q,answer=a,image=img"]
    with pytest.raises(RecordError, match=r"row 0.*img\[0\].*outside --image-root"):
        convert(tmp_path, *args)
    ds, _ = convert(tmp_path, *args, "--allow-outside-root", "--overwrite")
    assert ds[0]["image"].size == (8, 8)
