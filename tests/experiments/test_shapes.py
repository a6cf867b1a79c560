"""The shapes experiment: the report on a hand-made MLflow store, and a 2-step smoke of the
demo's stages (data, masks, warm-start validation, RL, report).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments.shapes.report import build_report
from experiments.shapes.runs import curve, load_runs, mean_std, smooth

# method -> seed -> final val/accuracy (the value logged at step 20; step 10 gets value - 0.1)
FINAL = {"dapo": {0: 0.50, 1: 0.60, 2: 0.70}, "dapo+ease": {0: 0.40, 1: 0.80, 2: 0.90}}


def _store(tmp_path: Path) -> str:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("shapes_rl", artifact_location=str(tmp_path / "artifacts"))
    for method, seeds in FINAL.items():
        for seed, acc in seeds.items():
            run = client.create_run(exp, tags={"study": "full", "method": method, "seed": str(seed)})
            rid = run.info.run_id
            client.log_metric(rid, "val/accuracy", acc - 0.1, step=10)
            client.log_metric(rid, "val/accuracy", acc, step=20)
            for step in range(20):  # training accuracy step / 100 + seed / 100
                client.log_metric(rid, "reward/first_round/accuracy", step / 100 + seed / 100, step=step)
            client.log_metric(rid, "val/evidence_ratio", 1.0 + seed, step=20)
            client.log_metric(rid, "val/ease/evidence_ratio", 1.5 + seed, step=20)  # EASE's layer
            client.set_terminated(rid)
    warm = client.create_run(exp, tags={"study": "full", "method": "warmstart", "seed": "0"})
    client.log_metric(warm.info.run_id, "val/accuracy", 0.3, step=0)
    client.set_terminated(warm.info.run_id)
    unfinished = client.create_run(exp, tags={"study": "full", "method": "dapo", "seed": "9"})
    client.log_metric(unfinished.info.run_id, "val/accuracy", 0.0, step=20)  # still RUNNING: ignored
    other = client.create_run(exp, tags={"study": "demo", "method": "dapo", "seed": "0"})
    client.log_metric(other.info.run_id, "val/accuracy", 0.0, step=20)  # other study: ignored
    client.set_terminated(other.info.run_id)
    return uri


def test_mean_std_by_hand():
    m, s, n = mean_std([0.5, 0.6, 0.7, float("nan")])
    assert n == 3 and m == pytest.approx(0.6)
    assert s == pytest.approx(math.sqrt(((0.1) ** 2 + 0 + (0.1) ** 2) / 2))  # ddof=1
    assert mean_std([0.4]) == (0.4, 0.0, 1)
    # trailing window 2: [1, (1+3)/2, (3+5)/2, (5+7)/2]
    assert smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]


@pytest.mark.slow
def test_report_table_matches_hand_computed(tmp_path):
    uri = _store(tmp_path)
    res = build_report(uri, tmp_path / "out", "full")
    rows = {r["method"]: r for r in res["rows"]}
    assert list(rows) == ["dapo", "dapo+ease"]  # warmstart is the baseline row, not a method
    # dapo: 0.5, 0.6, 0.7 -> mean 0.6, sample std 0.1
    assert rows["dapo"]["seeds"] == 3
    assert rows["dapo"]["val_acc"] == pytest.approx(0.6)
    assert rows["dapo"]["val_acc_std"] == pytest.approx(0.1)
    # dapo+ease: 0.4, 0.8, 0.9 -> mean 0.7; deviations -0.3, 0.1, 0.2 -> var (0.09+0.01+0.04)/2
    assert rows["dapo+ease"]["val_acc"] == pytest.approx(0.7)
    assert rows["dapo+ease"]["val_acc_std"] == pytest.approx(math.sqrt(0.07))
    assert rows["dapo+ease"]["delta_vs_dapo"] == pytest.approx(0.1)
    assert rows["dapo"]["val_acc_start"] == pytest.approx(0.3)
    # training accuracy: steps 0-9 -> 0.045 + seed/100 (mean over seeds 0.01) = 0.055;
    # steps 10-19 -> 0.145 + 0.01 = 0.155; std over seeds of seed/100: 0.01
    assert rows["dapo"]["train_acc_first"] == pytest.approx(0.055)
    assert rows["dapo"]["train_acc_last"] == pytest.approx(0.155)
    assert rows["dapo"]["train_acc_last_std"] == pytest.approx(0.01)
    assert rows["dapo"]["val_evidence_ratio"] == pytest.approx(2.0)
    assert rows["dapo"]["val_ease_evidence_ratio"] == pytest.approx(2.5)  # at EASE's layer: 1.5, 2.5, 3.5
    md = (tmp_path / "out" / "README.md").read_text()
    assert "| dapo | 3 | 0.300 | 0.600 ± 0.100 | 3/3 | — |" in md
    assert "| dapo+ease | 3 | 0.300 | 0.700 ± 0.265 | 3/3 | +0.100 |" in md
    assert "no clear difference" in md  # |0.1| <= max std 0.265
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "out" / "table.csv").read_text().startswith("method,seeds,")


@pytest.mark.slow
def test_curve_mean_std_over_seeds(tmp_path):
    import mlflow

    uri = _store(tmp_path)
    runs = [r for r in load_runs(mlflow.MlflowClient(uri), "shapes_rl", "full", ["val/accuracy"]) if r.method == "dapo"]
    steps, mean, std = curve(runs, "val/accuracy")
    assert steps.tolist() == [10, 20]
    assert mean.tolist() == pytest.approx([0.5, 0.6])
    assert std.tolist() == pytest.approx([0.1, 0.1])


@pytest.mark.slow
def test_demo_stages_two_steps(tmp_path):
    """Stage 0 (data + masks for the committed warm start), warm-start validation, 2 RL steps
    of dapo, then the report from the run's MLflow store.
    """
    from dataclasses import replace

    from experiments.shapes import recipe
    from experiments.shapes.stages import DataSettings, Workdir
    from experiments.shapes.warmstart import stage0

    work = Workdir(tmp_path)
    stage0(work, with_model=False, data=replace(recipe.DATA, num=40))
    assert (work.data / "train").is_dir() and (work.data / "validation").is_dir()
    budget = recipe.Budget(steps=2, val_every=2, seeds=(0,), limit_val=4)
    small = ["--data.batch_size=2", "--data.val_batch_size=4", "--model.init_args.sampling.num_generations=4"]
    recipe.validate_warmstart(work, "demo", budget, log=tmp_path / "warm.log", extra=small, threads=1)
    recipe.rl_run(work, "demo", "dapo", 0, budget, log=tmp_path / "rl.log", extra=small, threads=1)
    res = build_report(work.tracking_uri, tmp_path / "report", "demo")
    row = res["rows"][0]
    assert row["method"] == "dapo" and row["seeds"] == 1
    assert 0.0 <= row["val_acc"] <= 1.0 and math.isfinite(row["val_acc_start"])
    assert "overlays" in res["figures"] and "accuracy" in res["figures"]
    assert math.isfinite(row["val_ease_evidence_ratio"]) and math.isfinite(row["ease_ratio_start"])
    assert json.loads(recipe.ease_config(0.1))["model"]["init_args"]["credit"][0]["init_args"] == {"lambda_attn": 0.1}
    assert isinstance(DataSettings().synth_args(tmp_path), list)
