"""Tiny stand-ins for the recipes' smoke fits: per model family, a tiny random-weight model
whose vocabulary holds the synthetic questions, and the synthetic evidence dataset masked for
that model's processor (what ``visgrpo-data synth`` + ``masks`` give a user). Built once per
session, only for the families a test asks for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = CONFIGS / "recipe"


@pytest.fixture(scope="session")
def tiny_family_workspace(tmp_path_factory):
    """``family -> (model_dir, dataset_dir)``, built on first use."""
    from datasets import load_from_disk

    from data_tools.cli import main as data_main
    from visgrpo.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("recipe_workspace")
    raw = root / "raw"
    assert data_main(["synth", "--out", str(raw), "--num", "16", "--seed", "0", "--no-progress"]) == 0
    ds = load_from_disk(str(raw / "train"))
    corpus = list(ds["question"]) + list(ds["answer"])

    class _Workspace(dict):
        def __missing__(self, family: str) -> tuple[Path, Path]:
            model_dir = build_tiny(family, root / f"tiny_{family}", corpus=corpus, seed=0)
            data_dir = root / f"shapes_{family}"
            assert data_main(["masks", "--dataset", str(raw), "--processor", str(model_dir),
                              "--out", str(data_dir), "--no-progress"]) == 0
            self[family] = (Path(model_dir), data_dir / "train")
            return self[family]

    return _Workspace()
