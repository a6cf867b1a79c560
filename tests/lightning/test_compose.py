"""Config composition: experiment files list their parts (expanded into jsonargparse's
repeated ``--config``, no temporary file) and callbacks merge by class across files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from visgrpo.lightning.compose import expand_config_args, expand_parts, merge_callbacks

from .test_cli import printed_config

CKPT = "lightning.pytorch.callbacks.ModelCheckpoint"
CB = "visgrpo.lightning.callbacks."


def test_parts_expand_in_order_relative_to_the_listing_file(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("defaults: [../a.yaml]\nnested: {q: 2}\n")
    (tmp_path / "exp.yaml").write_text("defaults: [sub/b.yaml, a.yaml]\ny: 5\n")
    assert expand_parts(tmp_path / "exp.yaml") == [
        str(tmp_path / "a.yaml"), {"nested": {"q": 2}}, str(tmp_path / "a.yaml"), {"y": 5},
    ]
    assert expand_parts(tmp_path / "a.yaml") == [str(tmp_path / "a.yaml")]


def test_parts_errors_name_the_file(tmp_path: Path):
    (tmp_path / "exp.yaml").write_text("defaults: [missing.yaml]\n")
    with pytest.raises(FileNotFoundError, match=r"missing.yaml.*listed in .*exp.yaml"):
        expand_parts(tmp_path / "exp.yaml")
    (tmp_path / "c1.yaml").write_text("defaults: [c2.yaml]\n")
    (tmp_path / "c2.yaml").write_text("defaults: [c1.yaml]\n")
    with pytest.raises(ValueError, match="cycle"):
        expand_parts(tmp_path / "c1.yaml")
    (tmp_path / "bad.yaml").write_text("defaults: a.yaml\n")
    with pytest.raises(ValueError, match="bad.yaml: defaults must be a list"):
        expand_parts(tmp_path / "bad.yaml")


def test_command_line_keeps_paths_and_passes_own_keys_as_text(tmp_path: Path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("z: 1\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("defaults: [plain.yaml]\nw: 2\n")
    args = expand_config_args(["fit", "--config", str(exp), f"--config={plain}", "--x", "1"])
    assert args[:4] == ["fit", "--config", str(plain), "--config"]
    assert yaml.safe_load(args[4]) == {"w": 2}  # YAML text, not a file
    assert args[5:] == ["--config", str(plain), "--x", "1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "plain.yaml"]


def test_merge_callbacks_by_class():
    base = [{"class_path": CKPT, "init_args": {"save_last": True, "every_n_train_steps": 10}},
            {"class_path": CB + "AttentionOverlay", "init_args": {"every_n_steps": 50, "num_images": 4}}]
    later = [{"class_path": "AttentionOverlay", "init_args": {"every_n_steps": 7}},
             {"class_path": CB + "ExportModel"}]
    assert merge_callbacks(base, later) == [
        base[0],
        {"class_path": CB + "AttentionOverlay", "init_args": {"every_n_steps": 7, "num_images": 4}},
        {"class_path": CB + "ExportModel"},
    ]
    assert base[1]["init_args"]["every_n_steps"] == 50  # inputs untouched
    assert merge_callbacks(base, []) == []  # an explicit empty list drops them


def callbacks_of(cfg: dict) -> dict[str, dict]:
    classes = [c["class_path"] for c in cfg["trainer"]["callbacks"]]
    assert len(classes) == len(set(classes)), classes  # one entry per class
    return {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args") or {} for c in cfg["trainer"]["callbacks"]}


def test_shapes_rl_keeps_base_callbacks_and_its_own_setting(capsys):
    cfg = printed_config(capsys, "experiment/shapes_rl")
    cbs = callbacks_of(cfg)
    assert list(cbs) == ["ModelCheckpoint", "RolloutTable", "AttentionOverlay", "ExportModel"]  # base.yaml's order
    assert cbs["AttentionOverlay"]["every_n_steps"] == 1000000  # shapes_rl.yaml's setting
    assert cbs["AttentionOverlay"]["num_images"] == 4
    assert cbs["ModelCheckpoint"]["every_n_train_steps"] == 10 and cbs["ModelCheckpoint"]["save_last"] is True
    assert cbs["RolloutTable"] == {"every_n_steps": 10, "max_rows": 16}


def test_later_files_and_flags_merge_or_append_callbacks(capsys, tmp_path: Path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"trainer:\n  callbacks:\n    - class_path: {CB}RolloutTable\n      init_args: {{max_rows: 3}}\n"
                    "    - class_path: lightning.pytorch.callbacks.LearningRateMonitor\n")
    cfg = printed_config(capsys, "experiment/tiny_smoke", extra=(
        "--config", str(mine), "--trainer.callbacks+=lightning.pytorch.callbacks.ModelSummary"))
    cbs = callbacks_of(cfg)
    assert list(cbs) == ["ModelCheckpoint", "RolloutTable", "AttentionOverlay", "ExportModel",
                         "LearningRateMonitor", "ModelSummary"]
    assert cbs["RolloutTable"] == {"every_n_steps": 10, "max_rows": 3}


def test_empty_callbacks_list_drops_them(capsys):
    cfg = printed_config(capsys, "experiment/shapes_sft")  # `callbacks: []` on purpose
    assert cfg["trainer"]["callbacks"] in ([], None)
