"""Shared fixtures: tiny random-weight Qwen-VL model directories, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """Dict family -> path of a saved tiny model directory (built lazily, once)."""
    from visgrpo.models.tiny import build_tiny

    cache: dict[str, str] = {}

    class _Dirs(dict):
        def __missing__(self, family: str) -> str:
            path = build_tiny(family, tmp_path_factory.mktemp(f"tiny_{family}"), seed=0)
            self[family] = str(path)
            return self[family]

    return _Dirs(cache)


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    """Parametrises a test over the three supported families."""
    return request.param
