"""``visgrpo-data`` turns bad input into one line ``visgrpo-data <cmd>: error: ...`` and exit 1,
naming the record and the field, and leaves no partial output (data_tools/cli.py main).
"""

from __future__ import annotations

import json

import datasets
import pytest

from data_tools.cli import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing printed on stderr"
    return err[-1]


def test_masks_bad_box_exits_1_naming_record_and_field(tmp_path, capsys):
    src = tmp_path / "ds"
    datasets.Dataset.from_dict({
        "id": ["ok", "wide"], "width": [56, 56], "height": [56, 56],
        "boxes": [[[0, 0, 28, 28]], [[0, 0, 28, 28], [10, 10, 90, 20]]],  # x1 = 90 > 56 + 1 px
    }).save_to_disk(str(src))
    out = tmp_path / "out"
    argv = ["masks", "--dataset", str(src), "--out", str(out), "--processor", "qwen2_5_vl", "--no-progress"]
    assert main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith("visgrpo-data masks: error: id=wide: field 'boxes[1]': out of bounds")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp dir


def test_convert_bad_record_and_existing_output(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": "missing.png", "question": "q", "answer": "a",
                                                  "boxes": []}) + "\n")
    out = tmp_path / "out"
    argv = ["convert", "jsonl", "--input", str(tmp_path / "d.jsonl"), "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith("visgrpo-data convert: error: ") and "d.jsonl:1" in line
    assert "field 'image': image file not found" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]
    out.mkdir()
    assert main(argv) == 1
    assert _error_line(capsys) == f"visgrpo-data convert: error: {out} exists; pass --overwrite to replace it"


@pytest.mark.parametrize("argv", [["validate", "{d}"], ["stats", "{d}"],
                                  ["masks", "--dataset", "{d}", "--out", "{d}.out", "--processor", "qwen2_vl"]])
def test_missing_dataset_directory(tmp_path, capsys, argv):
    d = str(tmp_path / "nope")
    cmd = argv[0]
    assert main([a.format(d=d) for a in argv]) == 1
    assert _error_line(capsys) == f"visgrpo-data {cmd}: error: {d}: no such dataset directory"
    assert list(tmp_path.iterdir()) == []
