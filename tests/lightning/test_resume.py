"""``--ckpt_path last`` resumes a crashed run exactly: after 2 + 2 steps the weights and the
per-step rewards equal those of an uninterrupted 4-step run (CPU, same seed).

Each step is seeded from ``global_step``, so equal weights alone would not tell a resumed run
from one that ignored the checkpoint and retrained from step 0: the resumed process must also
run only steps 2 and 3, on the straight run's batches of those steps, starting from the
checkpoint's optimiser state, weights and data position.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from visgrpo.lightning.cli import build_cli

from .conftest import CONFIGS, tracking_args
from .replay import assert_started_from, probe_training_steps

pytestmark = pytest.mark.slow

CHECKPOINT_EVERY_2 = """
trainer:
  val_check_interval: 2
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        dirpath: runs/checkpoints
        save_last: true
        save_top_k: 0
        every_n_train_steps: 2
"""


def fit(work: Path, credit: str, max_steps: int, *extra: str):
    (work / "ckpt.yaml").write_text(CHECKPOINT_EVERY_2)
    return build_cli([
        "fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"),
        "--config", str(CONFIGS / f"credit/{credit}.yaml"), "--config", str(work / "ckpt.yaml"),
        *tracking_args(work), "--trainer.enable_progress_bar", "false",
        "--trainer.max_steps", str(max_steps), *extra,
    ])


def reward_history(work: Path) -> dict[int, float]:
    client = mlflow.tracking.MlflowClient(f"sqlite:///{work}/mlflow.db")
    exp = client.get_experiment_by_name("visgrpo")
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        out.update({m.step: m.value for m in client.get_metric_history(run.info.run_id, "reward/first_round/outcome")})
    return out


@pytest.mark.parametrize("credit", ["none", "ease"])
def test_resume_matches_uninterrupted_run(workspace, tmp_path, monkeypatch, credit):
    runs = {}
    for name in ("straight", "resumed"):
        work = tmp_path / name
        work.mkdir()
        (work / "artifacts").symlink_to(workspace / "artifacts", target_is_directory=True)
        runs[name] = work
    monkeypatch.chdir(runs["straight"])
    probe_straight = probe_training_steps(monkeypatch)
    straight = fit(runs["straight"], credit, 4)
    assert probe_straight.steps == [0, 1, 2, 3]

    monkeypatch.chdir(runs["resumed"])
    probe_first = probe_training_steps(monkeypatch)
    first = fit(runs["resumed"], credit, 2)
    assert probe_first.ids == probe_straight.ids[:2]
    assert first.trainer.global_step == 2
    last = runs["resumed"] / "runs/checkpoints/last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    probe = probe_training_steps(monkeypatch)
    resumed = fit(runs["resumed"], credit, 4, "--ckpt_path", "last")
    assert resumed.trainer.global_step == 4
    assert probe.steps == [2, 3]  # only the remaining steps ran in the resumed process
    assert probe.ids == probe_straight.ids[2:]  # on the batches the straight run drew there
    assert probe.ids != probe_straight.ids[:2]
    assert_started_from(probe, ckpt)

    a = dict(straight.model.policy.named_parameters())
    b = dict(resumed.model.policy.named_parameters())
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    moved = max((a[n] - first.model.policy.get_parameter(n)).abs().max().item() for n in a)
    assert moved > 1e-6  # steps 3 and 4 did change the weights

    ha, hb = reward_history(runs["straight"]), reward_history(runs["resumed"])
    assert sorted(ha) == sorted(hb) == [0, 1, 2, 3]
    assert hb == pytest.approx(ha, abs=1e-6)
