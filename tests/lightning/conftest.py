"""A workspace shaped like the experiments expect (``artifacts/`` under the working dir):
a tiny Qwen2.5-VL whose vocabulary holds the synthetic questions, and the synthetic
evidence dataset with masks for its processor. Built once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def build_workspace(root: Path, num: int = 40, seed: int = 0) -> Path:
    """``root/artifacts/{tiny_qwen2_5_vl,shapes}`` as configs/ refers to them."""
    from datasets import load_from_disk

    from data_tools.cli import main as data_main
    from visgrpo.models.tiny import build_tiny

    raw = root / "raw"
    assert data_main(["synth", "--out", str(raw), "--num", str(num), "--seed", str(seed), "--no-progress"]) == 0
    ds = load_from_disk(str(raw / "train"))
    corpus = list(ds["question"]) + list(ds["answer"])
    model_dir = build_tiny("qwen2_5_vl", root / "artifacts" / "tiny_qwen2_5_vl", corpus=corpus, seed=seed)
    assert data_main([
        "masks", "--dataset", str(raw), "--processor", str(model_dir),
        "--out", str(root / "artifacts" / "shapes"), "--no-progress",
    ]) == 0
    return root


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture
def in_workspace(workspace, tmp_path, monkeypatch) -> Path:
    """A fresh working directory whose ``artifacts/`` is the workspace's (relative paths of
    configs/ resolve there); its ``runs/`` and MLflow store are the test's own.
    """
    work = tmp_path / "work"
    work.mkdir()
    (work / "artifacts").symlink_to(workspace / "artifacts", target_is_directory=True)
    monkeypatch.chdir(work)
    return work


def tracking_args(work: Path) -> tuple[str, ...]:
    """An absolute MLflow URI: MLflow caches stores by URI string, so relative sqlite paths
    would point to the first test's file after a chdir.
    """
    return ("--trainer.logger.init_args.tracking_uri", f"sqlite:///{work}/mlflow.db")
