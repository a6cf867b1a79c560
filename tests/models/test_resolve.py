"""``resolve_model``: local directories, ``tiny:<family>`` built once on first use, and one
line naming a path that is neither local nor on the hub (visgrpo/models/loading.py).
"""

from __future__ import annotations

import huggingface_hub
import pytest

from data_tools.grid import load_processor_grid
from visgrpo.models.loading import ModelNotFound, resolve_model, tiny_model


def test_tiny_is_built_on_first_use_and_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_model("tiny:qwen2_5_vl")
    assert path == "artifacts/tiny_qwen2_5_vl"
    stamp = (tmp_path / path / "config.json").stat().st_mtime_ns
    assert resolve_model("tiny:qwen2_5_vl") == path
    assert (tmp_path / path / "config.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["tiny_qwen2_5_vl"]  # no temp folder left
    # visgrpo-data masks --processor tiny:<family> reads the same directory
    assert load_processor_grid("tiny:qwen2_5_vl").fingerprint()["max_pixels"] == 50176


def test_unknown_tiny_family(tmp_path):
    with pytest.raises(ModelNotFound, match=r"tiny:qwen9: unknown family; valid: qwen2_5_vl, qwen2_vl, qwen3_vl"):
        tiny_model("qwen9", tmp_path)


def test_local_paths(tmp_path, monkeypatch):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    (tmp_path / "f.bin").write_text("x")
    with pytest.raises(ModelNotFound, match="f.bin: a file, not a model directory"):
        resolve_model(str(tmp_path / "f.bin"))
    with pytest.raises(ModelNotFound, match=r"\./a/b/c: neither a local directory nor a valid hub model id"):
        resolve_model("./a/b/c")


def test_hub_ids(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def missing(name, **kwargs):  # the hub's 404 (built without an HTTP response object)
        err = huggingface_hub.errors.RepositoryNotFoundError.__new__(huggingface_hub.errors.RepositoryNotFoundError)
        Exception.__init__(err, "404 Repository Not Found")
        raise err
    monkeypatch.setattr(huggingface_hub, "model_info", missing)
    with pytest.raises(ModelNotFound,
                       match="^org/none: neither a local directory nor a model on the Hugging Face hub$"):
        resolve_model("org/none")
    monkeypatch.setattr(huggingface_hub, "model_info", lambda name, **kw: object())
    assert resolve_model("org/model") == "org/model"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="not in the hub cache"):
        resolve_model("org/model")
