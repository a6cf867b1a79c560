"""Perception pretraining of the relational testbed's vision tower: labels by hand, a short run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_tools.drawing import COLOURS, SHAPES
from experiments.mechanism.perception import pretrain_vision, token_labels

BG_COLOUR, BG_SHAPE = len(COLOURS), len(SHAPES)


def test_token_labels_by_hand():
    colours = list(COLOURS)
    # 4x4 grid over a 112-px image: 28 px per token. Box A covers token (0, 0) fully and 1/2
    # of token (0, 1); box B covers (2, 2) fully, (2, 3) by 1/4 (x 98..105 of 84..112).
    scene = [
        {"shape": "star", "colour": colours[2], "box": [0, 0, 42, 28]},
        {"shape": "cross", "colour": colours[4], "box": [56, 56, 91, 84]},
    ]
    lab = token_labels(scene, 112, 112, 4, 4)
    colour, shape = lab.colour.reshape(4, 4), lab.shape.reshape(4, 4)
    assert colour[0, 0] == 2 and shape[0, 0] == SHAPES.index("star")
    assert colour[0, 1] == 2  # covered by half >= MIN_COVER 0.3
    assert colour[2, 2] == 4 and shape[2, 2] == SHAPES.index("cross")
    assert colour[2, 3] == BG_COLOUR and shape[2, 3] == BG_SHAPE  # covered by 1/4 < 0.3
    assert (colour == BG_COLOUR).sum() == 13 and (shape == BG_SHAPE).sum() == 13


def test_token_labels_overlap_goes_to_the_larger_cover():
    colours = list(COLOURS)
    scene = [
        {"shape": "circle", "colour": colours[0], "box": [0, 0, 10, 28]},  # 10/28 of token 0
        {"shape": "square", "colour": colours[1], "box": [10, 0, 56, 28]},  # 18/28 of token 0
    ]
    lab = token_labels(scene, 56, 28, 1, 2)
    assert lab.colour.tolist() == [1, 1] and lab.shape.tolist() == [SHAPES.index("square")] * 2
    assert token_labels([], 56, 28, 1, 2).colour.tolist() == [BG_COLOUR, BG_COLOUR]


@pytest.fixture(scope="module")
def relational(tmp_path_factory):
    from data_tools.cli import main as data_main
    from visgrpo.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("perception")
    assert data_main(["synth", "--task", "relational", "--out", str(root / "raw"), "--num", "24", "--size", "112",
                      "--chain", "candidates", "--overwrite", "--no-progress"]) == 0
    model = build_tiny("qwen2_5_vl", root / "model", corpus=["colour"], seed=0)
    return root, model


def test_pretrain_vision_trains_only_the_tower(relational):
    from safetensors.torch import load_file

    root, model = relational
    out = root / "perceiving"
    lines: list[str] = []
    result = pretrain_vision(model, root / "raw" / "train", root / "raw" / "validation", out, steps=60, batch=8,
                             lr=3e-3, log=lines.append)
    assert set(result) == {"colour", "shape", "row", "col", "background"}
    assert all(0.0 <= v <= 1.0 for v in result.values())
    before, after = load_file(model / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".visual." in k or k.startswith("visual.") for k in changed)
    assert any("merger" in k for k in changed) and any("patch_embed" in k for k in changed)
    assert (out / "perception.json").exists() and (out / "tokenizer.json").exists()
    losses = [float(x.split("loss ")[1].split()[0]) for x in lines if x.startswith("perception step")]
    assert len(losses) == 2 and losses[-1] < 0.7 * losses[0]  # steps 0 and 59
    assert np.isfinite(list(result.values())).all()
