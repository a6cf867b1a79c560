"""``visgrpo validate`` and ``visgrpo test`` through the CLI: the metrics they report equal
those computed by hand from the replayed answers (greedy decoding = replayed response 0).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from datasets import load_from_disk

from visgrpo.cli import main

from .conftest import CONFIGS, tracking_args
from .replay import is_right  # registers the "replay" rollout engine

pytestmark = pytest.mark.slow


def reported(work: Path) -> dict[str, float]:
    client = mlflow.tracking.MlflowClient(f"sqlite:///{work}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("visgrpo").experiment_id])
    assert run.info.status == "FINISHED"
    return run.data.metrics


def expected(split: Path, stage: str) -> dict[str, float]:
    """Accuracy overall and per answer type: the fraction of samples whose replayed greedy
    answer is the right one.
    """
    ds = load_from_disk(str(split))
    right = [is_right(i, 0) for i in ds["id"]]
    out = {f"{stage}/accuracy": sum(right) / len(right)}
    for kind in set(ds["answer_type"]):
        sel = [r for r, k in zip(right, ds["answer_type"], strict=True) if k == kind]
        out[f"{stage}/accuracy_{kind}"] = sum(sel) / len(sel)
    return out


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_evaluation_subcommands_report_replayed_accuracy(in_workspace, stage):
    split = Path("artifacts/shapes/validation")
    args = [
        stage, "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"), *tracking_args(in_workspace),
        "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1.0",
        "--trainer.limit_test_batches", "1.0", "--model.init_args.rollout_engine", "replay",
    ]
    if stage == "test":
        args += ["--data.test_path", str(split)]
    assert main(args) == 0
    prefix = "val" if stage == "validate" else "test"
    want = expected(split, prefix)
    assert 0.0 < want[f"{prefix}/accuracy"] < 1.0  # the replay gives a mix: a real check
    metrics = reported(in_workspace)
    for key, value in want.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert {f"{prefix}/reward", f"{prefix}/response_length", f"{prefix}/evidence_ratio"} <= set(metrics)
    assert not any(k.startswith("reward/") for k in metrics)  # evaluation only: no training step ran
