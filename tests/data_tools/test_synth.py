"""Synthetic evidence-VQA: determinism, answers re-derived from the generator's scene."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from data_tools.synth import COLOURS, DIRECTIONS, generate, make_sample
from visgrpo.data.io import load_dataset_dir


def _expected(row: dict) -> tuple[str, list[int]]:
    """Answer and evidence object indices recomputed from the scene and the question."""
    scene, q = json.loads(row["scene"]), row["question"]
    if row["question_type"] == "colour":
        shape = q.split("What colour is the ")[1].split("?")[0]
        idx = [i for i, o in enumerate(scene) if o["shape"] == shape]
        assert len(idx) == 1  # the named shape is unique
        colour = scene[idx[0]]["colour"]
        if row["answer_type"] == "choice":
            return "ABCD"[row["options"].index(colour)], idx
        return colour, idx
    if row["question_type"] == "count":
        colour, noun = q.split("How many ")[1].split(" are there?")[0].split(" ")
        idx = [i for i, o in enumerate(scene) if o["colour"] == colour and noun.startswith(o["shape"])]
        return str(len(idx)), idx
    direction = q.split("What shape is the ")[1].split(" object?")[0]
    axis, sign = DIRECTIONS[direction]
    centre = [((o["box"][axis] + o["box"][axis + 2]) / 2) * sign for o in scene]
    best = int(np.argmax(centre))
    return scene[best]["shape"], [best]


def test_same_seed_same_dataset_and_index_independence():
    a, b = generate(12, seed=5), generate(12, seed=5)
    assert a.features == b.features
    ra = a.cast_column("image", a.features["image"].__class__(decode=False)).to_list()
    rb = b.cast_column("image", b.features["image"].__class__(decode=False)).to_list()
    assert ra == rb  # every column, image bytes included
    assert list(generate(3, seed=6)["question"]) != list(a.select(range(3))["question"])
    # sample i depends only on (seed, i)
    tail = make_sample(10, seed=5)
    assert tail["image"]["bytes"] == ra[10]["image"]["bytes"] and tail["answer"] == ra[10]["answer"]


def test_answers_and_evidence_follow_the_scene():
    ds = generate(60, seed=1)
    kinds = set()
    for row in ds:
        kinds.add((row["question_type"], row["answer_type"]))
        answer, idx = _expected(row)
        assert row["answer"] == answer, row["question"]
        scene = json.loads(row["scene"])
        assert row["boxes"] == [scene[i]["box"] for i in idx]
        assert row["box_labels"] == [f"{scene[i]['colour']} {scene[i]['shape']}" for i in idx]
        img = np.asarray(row["image"].convert("RGB"))
        for seg, box, i in zip(row["segmentation"], row["boxes"], idx, strict=True):
            m = mask_utils.decode({"size": [224, 224], "counts": json.loads(seg)["counts"].encode()})
            ys, xs = np.nonzero(m)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box  # tight box
            # the mask's pixels have the object's colour
            assert (img[m.astype(bool)] == COLOURS[scene[i]["colour"]]).all()
        # distractors: the answer is not readable from global statistics
        if row["question_type"] == "colour":
            ev = scene[idx[0]]
            assert sum(o["colour"] == ev["colour"] for o in scene) >= 2
        if row["question_type"] == "count":
            colour, shape = row["box_labels"][0].split()
            assert any(o["colour"] == colour and o["shape"] != shape for o in scene)
            assert any(o["colour"] != colour and o["shape"] == shape for o in scene)
        if row["question_type"] == "position":
            assert len({o["shape"] for o in scene}) >= 3
    assert {("colour", "choice"), ("colour", "text"), ("count", "number"), ("position", "text")} <= kinds


def test_cli_writes_train_and_validation(synth_dir):
    train, meta = load_dataset_dir(synth_dir / "train")
    val, _ = load_dataset_dir(synth_dir / "validation")
    assert (len(train), len(val)) == (32, 4)  # round(36 * 0.1) = 4 validation samples
    assert meta["synth"]["seed"] == 11 and meta["synth"]["splits"] == {"train": 32, "validation": 4}
    ids = list(train["id"]) + list(val["id"])
    assert len(set(ids)) == 36 and ids[32] == "synth-11-0000032"
    raw = train.cast_column("image", train.features["image"].__class__(decode=False))[0]["image"]
    assert Image.open(io.BytesIO(raw["bytes"])).size == (224, 224)


def test_object_count_defaults_follow_the_task():
    """``--min-objects`` defaults to each task's own minimum: the README's plain
    ``synth --task relational`` must not be refused by the shapes default (4).
    """
    import argparse

    from data_tools.synth import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for task, lo in (("shapes", 4), ("relational", 5)):
        args = parser.parse_args(["--task", task, "--out", "x", "--num", "1"])
        assert settings_from_args(args)["min_objects"] == lo
    args = parser.parse_args(["--task", "relational", "--out", "x", "--num", "1", "--min-objects", "4"])
    with pytest.raises(ValueError, match="relational needs 5"):
        settings_from_args(args)
