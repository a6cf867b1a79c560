"""Micro-batches keep groups whole; experiment YAMLs compose with OmegaConf."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from visgrpo.lightning.batching import group_micro_batches
from visgrpo.lightning.compose import compose, expand_config_args

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_micro_batches_partition_and_keep_groups_whole():
    # Groups (in appearance order): 7 x3, 2 x2, 5 x1, 9 x4 (one group interleaved).
    group_ids = torch.tensor([7, 7, 2, 7, 2, 5, 9, 9, 9, 9])
    batches = group_micro_batches(group_ids, micro_batch_size=4)
    # 7 (3) fits; adding 2 (2) would make 5 > 4 -> new batch [2 x2, 5 x1] = 3; 9 (4) -> own batch.
    assert [b.tolist() for b in batches] == [[0, 1, 3], [2, 4, 5], [6, 7, 8, 9]]
    flat = torch.cat(batches).sort().values
    assert torch.equal(flat, torch.arange(10))
    for b in batches:
        groups = set(group_ids[b].tolist())
        for g in groups:  # every member of the group is in this batch
            assert set((group_ids == g).nonzero().flatten().tolist()) <= set(b.tolist())


def test_oversized_group_is_its_own_batch_and_bad_size_fails():
    batches = group_micro_batches(torch.tensor([0, 0, 0, 0, 0, 1]), micro_batch_size=2)
    assert [len(b) for b in batches] == [5, 1]
    with pytest.raises(ValueError, match="positive"):
        group_micro_batches(torch.tensor([0]), 0)


def test_compose_merges_defaults_in_order(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("x: 1\nnested: {p: 1, q: 1}\nlst: [1, 2]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("defaults: [../a.yaml]\nnested: {q: 2}\n")
    (tmp_path / "exp.yaml").write_text("defaults: [sub/b.yaml]\nlst: [3]\ny: 5\n")
    assert compose(tmp_path / "exp.yaml") == {"x": 1, "nested": {"p": 1, "q": 2}, "lst": [3], "y": 5}


def test_compose_errors_name_the_file(tmp_path: Path):
    (tmp_path / "exp.yaml").write_text("defaults: [missing.yaml]\n")
    with pytest.raises(FileNotFoundError, match=r"missing.yaml.*listed in .*exp.yaml"):
        compose(tmp_path / "exp.yaml")
    (tmp_path / "c1.yaml").write_text("defaults: [c2.yaml]\n")
    (tmp_path / "c2.yaml").write_text("defaults: [c1.yaml]\n")
    with pytest.raises(ValueError, match="cycle"):
        compose(tmp_path / "c1.yaml")


def test_expand_config_args_rewrites_only_composed_files(tmp_path: Path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("z: 1\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("defaults: [plain.yaml]\nw: 2\n")
    args = expand_config_args(["fit", "--config", str(exp), f"--config={plain}", "--x", "1"], str(tmp_path))
    assert args[0] == "fit" and args[-2:] == ["--x", "1"]
    assert args[3:5] == ["--config", str(plain)]
    assert yaml.safe_load(Path(args[2]).read_text()) == {"z": 1, "w": 2}


def test_tiny_smoke_experiment_composes():
    cfg = compose(CONFIGS / "experiment" / "tiny_smoke.yaml")
    assert cfg["model"]["class_path"] == "visgrpo.lightning.RLVRModule"
    assert cfg["model"]["init_args"]["objective"] == "dapo"
    assert cfg["trainer"]["max_steps"] == 2
    assert cfg["trainer"]["logger"]["class_path"].endswith("MLFlowLogger")
