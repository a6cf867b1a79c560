"""convert guards: --image-root is a boundary, the pixel limit, and the clear messages of
issue-listed weak spots (labels, same-named inputs, skip report, bad segmentations, bad
instances files, refs pickles, stale work folders of killed runs).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from data_tools.cli import main
from data_tools.errors import RecordError
from tests.data_tools.conftest import run_command
from tests.data_tools.test_convert_coco import _run as run_coco
from tests.data_tools.test_convert_coco import make_coco
from tests.data_tools.test_convert_refcoco import _run as run_refcoco
from tests.data_tools.test_convert_refcoco import make_refcoco
from visgrpo.data.io import clean_stale, load_dataset_dir

ROW = {"question": "q", "answer": "a", "boxes": [[0, 0, 4, 4]]}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _convert(inputs, out: Path, *extra: str) -> int:
    return run_command(["convert", "jsonl", "--input", *map(str, inputs), "--out", str(out),
                        "--no-progress", *extra])  # fmt: skip


def _last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


# ---------------------------------------------------------------- --image-root boundary
def test_paths_outside_image_root_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "in.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    for i, name in enumerate(["../secret.png", str(tmp_path / "secret.png"), "sub/../../secret.png"]):
        src = _jsonl(tmp_path / f"d{i}.jsonl", [{**ROW, "image": name}])
        with pytest.raises(RecordError, match=r"image path .* is outside --image-root") as e:
            _convert([src], tmp_path / "out", "--image-root", str(root))
        assert e.value.where == f"{src}:1" and e.value.field == "image"
        assert not (tmp_path / "out").exists()
    inside = _jsonl(tmp_path / "ok.jsonl", [{**ROW, "image": str(root / "in.png")},
                                            {**ROW, "image": "./in.png"}])  # fmt: skip
    assert _convert([inside], tmp_path / "out", "--image-root", str(root)) == 0
    assert _convert([tmp_path / "d0.jsonl"], tmp_path / "out2", "--image-root", str(root),
                    "--allow-outside-root") == 0  # fmt: skip
    assert load_dataset_dir(tmp_path / "out2")[0][0]["image"].size == (8, 8)


def test_coco_file_name_outside_root_is_refused(tmp_path):
    inst, qpath = make_coco(tmp_path)
    doc = json.loads(inst.read_text())
    doc["images"][0]["file_name"] = "../../etc/hostname"
    inst.write_text(json.dumps(doc))
    with pytest.raises(RecordError, match="outside --image-root") as e:
        run_coco(tmp_path, inst, qpath)
    assert e.value.where.endswith("questions.jsonl:1 (id=q1)") and e.value.field == "file_name"


# ---------------------------------------------------------------- pixel limit
def test_convert_refuses_images_above_the_pixel_limit(tmp_path, capsys):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    src = _jsonl(tmp_path / "d.jsonl", [{**ROW, "image": "a.png", "id": "big"}])
    argv = ["convert", "jsonl", "--input", str(src), "--out", str(tmp_path / "out"), "--no-progress",
            "--id-field", "id", "--max-image-pixels", "199"]  # fmt: skip
    assert main(argv) == 1
    line = _last_line(capsys)
    assert f"{src}:1 (id=big): field 'image': image too large" in line
    assert "20x10 = 200 pixels, above the limit of 199" in line
    assert main([*argv[:-1], "200"]) == 0


# ---------------------------------------------------------------- weak messages
def test_box_labels_are_read_and_checked_without_labels_field(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    good = _jsonl(tmp_path / "g.jsonl", [{**ROW, "image": "a.png", "box_labels": ["cup"]}])
    assert _convert([good], tmp_path / "out") == 0
    assert load_dataset_dir(tmp_path / "out")[0][0]["box_labels"] == ["cup"]
    bad = _jsonl(tmp_path / "b.jsonl", [{**ROW, "image": "a.png", "box_labels": ["cup", "dog"]}])
    with pytest.raises(RecordError, match="2 labels for 1 boxes") as e:
        _convert([bad], tmp_path / "out2")
    assert e.value.field == "box_labels" and e.value.where == f"{bad}:1"


def test_same_named_inputs_get_distinct_ids(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    a = _jsonl(tmp_path / "x" / "train.jsonl", [{**ROW, "image": "../a.png"}])
    b = _jsonl(tmp_path / "y" / "train.jsonl", [{**ROW, "image": "../a.png"}])
    c = _jsonl(tmp_path / "val.jsonl", [{**ROW, "image": "a.png"}])
    assert _convert([a, b, c], tmp_path / "out", "--allow-outside-root") == 0
    assert load_dataset_dir(tmp_path / "out")[0]["id"] == ["x_train-1", "y_train-1", "val-1"]


def test_skip_report_lists_every_counted_record(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{**ROW, "image": "a.png"}] + [{**ROW, "image": f"missing{i}.png"} for i in range(7)]
    src = _jsonl(tmp_path / "d.jsonl", rows)
    assert _convert([src], tmp_path / "out", "--on-error", "skip") == 0
    err = capsys.readouterr().err
    assert "7 of 8 records skipped" in err and "and 2 more in the error report" in err
    (reason,) = json.loads((tmp_path / "out.errors.json").read_text())["reasons"]
    assert reason["count"] == 7 == len(reason["examples"]) and reason["omitted"] == 0
    assert [ex.split(" ")[0] for ex in reason["examples"]] == [f"{src}:{n}" for n in range(2, 9)]


@pytest.mark.parametrize(
    ("seg", "reason"),
    [
        ([], "empty polygon list"),
        ({"size": [16, 16], "counts": "!!garbage"}, "bad RLE counts: invalid character"),
        ({"size": [16, 16], "counts": [3, 4]}, "bad RLE counts: 2 runs covering 7 pixels, expected 256"),
        ({"size": [8, 8], "counts": [64]}, r"RLE size \[8, 8\] != image 16x16"),
    ],
)
def test_coco_bad_segmentation_is_refused_at_convert(tmp_path, seg, reason):
    inst, qpath = make_coco(tmp_path)
    doc = json.loads(inst.read_text())
    doc["annotations"][2]["segmentation"] = seg  # annotation 12, image 2 (16x16), question q3
    inst.write_text(json.dumps(doc))
    with pytest.raises(RecordError, match=reason) as e:
        run_coco(tmp_path, inst, qpath)
    assert e.value.where.endswith("(id=q3)") and e.value.field == "segmentation[0]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", "instances.json: field '<file>': expected a COCO instances object"),
        ('{"images": [\n{"id": 1,]}', "instances.json:2: field '<file>': malformed JSON"),
        (json.dumps({"images": [], "annotations": [{"id": 7, "bbox": [0, 0, 1, 1]}]}),
         "instances.json: annotations[0] (id=7): field 'image_id': missing"),
    ],
)  # fmt: skip
def test_bad_instances_file_is_one_line_naming_it(tmp_path, capsys, text, expected):
    _, qpath = make_coco(tmp_path)
    inst = tmp_path / "instances.json"
    inst.write_text(text)
    argv = ["convert", "coco", "--instances", str(inst), "--questions", str(qpath),
            "--image-root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert _last_line(capsys).startswith(f"visgrpo-data convert: error: {tmp_path}/{expected}")


def test_bad_instances_message_exact(tmp_path, capsys):
    _, qpath = make_coco(tmp_path)
    inst = tmp_path / "instances.json"
    inst.write_text("[]")
    argv = ["convert", "coco", "--instances", str(inst), "--questions", str(qpath),
            "--image-root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"visgrpo-data convert: error: {inst}: field '<file>': expected a COCO instances object "
        "with 'images' and 'annotations', got a JSON list"
    ]


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def test_refs_pickles_fail_in_one_line_and_run_nothing(tmp_path, capsys):
    make_refcoco(tmp_path)
    bad = tmp_path / "refs.p"
    bad.write_bytes(b"\x80\x04not a pickle")
    argv = ["convert", "refcoco", "--refs", str(bad), "--instances", str(tmp_path / "instances.json"),
            "--image-root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress",
            "--allow-pickle"]  # fmt: skip
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"visgrpo-data convert: error: {bad}: cannot read the refs pickle: ")
    target = tmp_path / "pwned.txt"
    bad.write_bytes(pickle.dumps([_Payload(target)]))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "probe.txt")))  # the payload is live
    assert (tmp_path / "probe.txt").read_text() == "pwned"
    assert main(argv) == 1
    assert "refusing to load global pathlib" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="cannot read the refs pickle"):
        run_refcoco(tmp_path, bad, "--allow-pickle")


# ---------------------------------------------------------------- killed runs
def test_next_masks_run_removes_work_folders_of_killed_runs(tmp_path, synth_dir):
    out = tmp_path / "masked"
    killed = (
        "import os, signal, sys\n"
        "from visgrpo.data.io import atomic_output_dir\n"
        "ctx = atomic_output_dir(sys.argv[1]); tmp = ctx.__enter__()\n"
        "(tmp / 'half.arrow').write_bytes(b'x' * 100)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", killed, str(out)], env=env)
    assert proc.wait(timeout=120) == -9
    (stale,) = tmp_path.glob(".masked.tmp-*")
    assert stale.name.startswith(f".masked.tmp-{proc.pid}@{socket.gethostname()}-")
    live = tmp_path / f".masked.tmp-{os.getpid()}@{socket.gethostname()}-abc"  # a concurrent run
    other = tmp_path / f".other.tmp-{proc.pid}@{socket.gethostname()}-abc"  # another output
    live.mkdir()
    other.mkdir()
    argv = ["masks", "--dataset", str(synth_dir / "validation"), "--out", str(out),
            "--processor", "qwen2_5_vl", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert not stale.exists() and live.exists() and other.exists() and out.is_dir()
    assert clean_stale(tmp_path / "other") == [other]


def test_validate_applies_the_pixel_limit(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    src = _jsonl(tmp_path / "d.jsonl", [{**ROW, "image": "a.png"}])
    assert _convert([src], tmp_path / "out") == 0
    report = tmp_path / "v.json"
    argv = ["validate", str(tmp_path / "out"), "--report", str(report), "--max-image-pixels"]
    assert main([*argv, "200"]) == 0
    assert main([*argv, "199"]) == 1
    (reason,) = json.loads(report.read_text())["splits"][0]["reasons"]
    assert reason["reason"].startswith("image: cannot decode image: image is 20x10 = 200 pixels")
