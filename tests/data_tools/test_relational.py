"""``visgrpo-data synth --task relational``: determinism, answers and boxes re-derived from
the generator's scene, distractors, the reasoning chain and the CLI.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from data_tools.cli import main as data_main
from data_tools.drawing import COLOURS
from data_tools.relational import make_sample, region_name
from data_tools.synth import generate
from visgrpo.data.io import load_dataset_dir

ROWS = [make_sample(i, seed=3) for i in range(40)]


def _centre(o: dict) -> np.ndarray:
    b = o["box"]
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])


def _expected(row: dict) -> int:
    """Index of the target, re-derived from the question and the scene alone."""
    scene, q = json.loads(row["scene"]), row["question"]
    m = re.fullmatch(r"What colour is the (\w+) (.+)\?", q)
    shape, relation = m.group(1), m.group(2)
    pair = [k for k, o in enumerate(scene) if o["shape"] == shape]
    assert len(pair) == 2  # the shape alone is ambiguous: exactly two objects have it
    if relation.startswith("nearest to the "):
        colour, ref_shape = relation.removeprefix("nearest to the ").split(" ")
        refs = [k for k, o in enumerate(scene) if (o["shape"], o["colour"]) == (ref_shape, colour)]
        assert len(refs) == 1  # the reference is unique
        d = [np.linalg.norm(_centre(scene[k]) - _centre(scene[refs[0]])) for k in pair]
        assert min(d) <= 0.7 * max(d) + 1.0  # clear-cut (box centres ~ drawn centres)
        return pair[int(np.argmin(d))]
    axis, pick = {"on the left": (0, np.argmin), "on the right": (0, np.argmax),
                  "at the top": (1, np.argmin), "at the bottom": (1, np.argmax)}[relation]
    c = [_centre(scene[k])[axis] for k in pair]
    assert abs(c[0] - c[1]) >= 0.15 * row["width"] - 2.0
    return pair[int(pick(c))]


def test_deterministic_and_index_independent():
    again = make_sample(7, seed=3)
    assert again == ROWS[7]
    assert make_sample(7, seed=4)["image"]["bytes"] != ROWS[7]["image"]["bytes"]
    ds = generate(3, seed=3, start=5, task="relational")
    assert ds[0]["question"] == ROWS[5]["question"] and ds[2]["reasoning"] == ROWS[7]["reasoning"]


def test_answers_boxes_and_distractors_from_the_scene():
    kinds = set()
    for row in ROWS:
        scene = json.loads(row["scene"])
        t = _expected(row)
        kinds.add(row["question_type"])
        assert row["answer"] == scene[t]["colour"] and row["answer_type"] == "text"
        assert row["boxes"] == [scene[t]["box"]] and row["box_labels"] == [f"{scene[t]['colour']} {scene[t]['shape']}"]
        # another object (not the twin) shares the target's colour
        assert any(o["colour"] == row["answer"] and o["shape"] != scene[t]["shape"] for o in scene)
        # the box is tight around pixels of the target's colour
        img = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
        x0, y0, x1, y1 = (int(v) for v in row["boxes"][0])
        inside = (img[y0:y1, x0:x1] == COLOURS[row["answer"]]).all(-1)
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert 5 <= len(scene) <= 7 and row["width"] == row["height"] == 224
    assert kinds == {"position", "nearest"}


def test_reasoning_is_grounded_and_long():
    for row in ROWS:
        scene = json.loads(row["scene"])
        words = row["reasoning"].split()
        assert len(words) >= 48, row["reasoning"]
        for o in scene:  # every object is mentioned, with its place
            place = region_name(*_centre(o), row["width"])
            assert f"{o['colour']} {o['shape']} at the {place}" in row["reasoning"]
        assert row["reasoning"].endswith(f"is {row['answer']}.")  # the answer comes last
        assert row["answer"] not in " ".join(words[:3])


def test_region_names():
    assert region_name(10, 10, 224) == "top left" and region_name(112, 112, 224) == "centre"
    assert region_name(220, 112, 224) == "middle right" and region_name(112, 223, 224) == "bottom centre"


def test_cli_writes_the_task_and_rejects_too_few_objects(tmp_path, capsys):
    out = tmp_path / "rel"
    assert data_main(["synth", "--task", "relational", "--out", str(out), "--num", "10", "--min-objects", "5",
                      "--max-objects", "6", "--no-progress"]) == 0
    ds, _ = load_dataset_dir(out / "validation")
    assert len(ds) == 1 and "reasoning" in ds.column_names and ds[0]["source"] == "synth-relational"
    meta = json.loads((out / "visgrpo_meta.json").read_text())
    assert meta["synth"]["task"] == "relational"
    assert data_main(["synth", "--task", "relational", "--out", str(tmp_path / "x"), "--num", "4",
                      "--min-objects", "3", "--no-progress"]) == 2
    assert "--task relational needs 5 <= --min-objects" in capsys.readouterr().err


@pytest.mark.parametrize("index", [0, 1])
def test_merged_token_grid_is_8x8_for_qwen2_5_vl(index):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    row = ROWS[index]
    h, w = smart_resize(row["height"], row["width"], factor=28, min_pixels=3136, max_pixels=50176)
    assert (h // 28, w // 28) == (8, 8)


def test_candidates_chain_is_shorter_grounded_and_same_scene():
    from visgrpo.models.tiny import PIECE_PATTERN

    for i, full in enumerate(ROWS[:20]):
        row = make_sample(i, seed=3, chain="candidates")
        assert {k: v for k, v in row.items() if k != "reasoning"} == {k: v for k, v in full.items() if k != "reasoning"}
        scene, t = json.loads(row["scene"]), _expected(row)
        twin = next(k for k, o in enumerate(scene) if o["shape"] == scene[t]["shape"] and k != t)
        for k in (t, twin):  # both look-alikes, each with its coarse place
            assert f"the {scene[k]['colour']} one at the {region_name(*_centre(scene[k]), 224)}" in row["reasoning"]
        assert not row["reasoning"].startswith("I see")  # the object list is left out
        tokens = re.findall(PIECE_PATTERN, row["reasoning"])  # the tiny tokenizer's pieces, spaces included
        assert 48 <= len(tokens) < len(re.findall(PIECE_PATTERN, full["reasoning"])), row["reasoning"]
        assert row["reasoning"].endswith(f"is {row['answer']}.")
    with pytest.raises(ValueError, match="chain must be one of"):
        make_sample(0, seed=3, chain="short")


def test_cli_chain_option(tmp_path, capsys):
    out = tmp_path / "rel"
    assert data_main(["synth", "--task", "relational", "--chain", "candidates", "--out", str(out), "--num", "4",
                      "--no-progress"]) == 0
    ds, _ = load_dataset_dir(out / "train")
    assert not ds[0]["reasoning"].startswith("I see")
    assert data_main(["synth", "--chain", "candidates", "--out", str(tmp_path / "s"), "--num", "4",
                      "--no-progress"]) == 2
    assert "--chain applies to --task relational only" in capsys.readouterr().err
