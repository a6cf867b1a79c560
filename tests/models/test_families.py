"""Model-family detection: one implementation, for loaded processors and for directories."""

from __future__ import annotations

import json

import pytest

from visgrpo.models.families import FAMILIES, family_of_dir, family_of_processor


def test_family_of_model_and_processor_directory(tiny_model_dirs, tmp_path):
    from transformers import AutoProcessor

    path = tiny_model_dirs["qwen2_vl"]
    assert family_of_dir(path) == "qwen2_vl"  # config.json model_type, through AutoConfig
    proc = AutoProcessor.from_pretrained(path)
    assert family_of_processor(proc) == "qwen2_vl"
    proc.save_pretrained(tmp_path / "proc")  # no config.json: processor_class decides
    assert family_of_dir(tmp_path / "proc") == "qwen2_vl"


def test_family_of_dir_rejects_other_models(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the model family"):
        family_of_dir(tmp_path / "empty")
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="cannot tell the model family"):
        family_of_dir(tmp_path / "llama")
    # remote code is never run: an unknown model_type with an auto_map is just unknown
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text(
        json.dumps({"model_type": "qwen_remote", "auto_map": {"AutoConfig": "cfg.QwenConfig"}})
    )
    with pytest.raises(ValueError, match="cannot tell the model family"):
        family_of_dir(tmp_path / "remote")


def test_family_of_processor_names_the_valid_classes():
    class LlavaProcessor:
        pass

    with pytest.raises(ValueError, match="Qwen2_5_VLProcessor"):
        family_of_processor(LlavaProcessor())
    assert {f.name for f in FAMILIES.values()} == set(FAMILIES)
