"""End-to-end ``visgrpo fit`` on the tiny Qwen2.5-VL and synthetic evidence data: every
objective preset and every credit method trains two steps through the Lightning CLI and
leaves its metrics, the resolved config and the rollout table in the MLflow store.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pytest
import torch

from visgrpo.credit import CREDIT_METHODS
from visgrpo.lightning.cli import build_cli

from .conftest import CONFIGS, tracking_args

pytestmark = pytest.mark.slow

COMMON = {
    "reward", "reward/first_round/outcome", "reward/first_round/accuracy", "reward/first_round/format",
    "reward/filtered/outcome", "reward/filtered/accuracy", "reward/filtered/total",
    "policy/pg_loss", "policy/ratio_mean", "policy/entropy", "adv/adv_std", "loss/total",
    "rollout/response_length", "train/lr", "train/grad_norm", "train/nonfinite_skipped",
    "diag/evidence_ratio", "diag/visual_mass", "diag/visual_mass_pos00",
    "val/accuracy", "val/reward", "val/evidence_ratio", "val/response_length",
}
PRESET_METRICS = {
    "grpo": {"policy/kl", "policy/kl_loss", "policy/clip_frac"},
    "dapo": {"dapo/groups_dropped", "dapo/groups_total", "reward/first_round/overlong", "policy/clip_frac"},
    "dr_grpo": {"policy/clip_frac"},
    "gspo": {"policy/clip_frac"},
    "sapo": set(),  # a soft gate: nothing is clipped
}
CREDIT_METRICS = {
    "sayo": {"sayo/reward", "sayo/a_img", "sayo/a_reg", "sayo/selected_tokens"},
    "vgpo": {"vgpo/psi_mean", "vgpo/alpha_mean", "vgpo/gated_frac", "vgpo/focus_mean"},
    "atrl": {"atrl/weight_mean", "atrl/anchor_share", "atrl/clusters_per_response"},
    "ease": {"ease/kl", "ease/gated", "ease/loss"},
}


def fit(*configs: str, extra: tuple[str, ...] = ()):
    args = ["fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml")]
    for c in configs:
        args += ["--config", str(CONFIGS / f"{c}.yaml")]
    return build_cli([*args, *tracking_args(Path.cwd()), "--trainer.enable_progress_bar", "false", *extra])


def last_run():
    client = mlflow.tracking.MlflowClient(f"sqlite:///{Path.cwd()}/mlflow.db")
    exp = client.get_experiment_by_name("visgrpo")
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def check_common(cli, client, run):
    assert run.info.status == "FINISHED"
    assert cli.trainer.global_step == 2
    keys = set(run.data.metrics)
    assert keys >= COMMON, sorted(COMMON - keys)
    for k in COMMON:
        assert math.isfinite(run.data.metrics[k]), k
    history = client.get_metric_history(run.info.run_id, "reward/first_round/outcome")
    assert [m.step for m in history] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    assert run.data.params["objective"] == cli.model.hparams.objective
    return keys


@pytest.mark.parametrize("objective", sorted(PRESET_METRICS))
def test_fit_every_objective(in_workspace, objective):
    cli = fit(f"objective/{objective}")
    client, run = last_run()
    keys = check_common(cli, client, run)
    assert PRESET_METRICS[objective] <= keys, sorted(PRESET_METRICS[objective] - keys)
    assert (cli.model.reference is not None) == (objective == "grpo")  # KL only in grpo
    assert run.data.params["credit"] == "none"


@pytest.mark.parametrize("credit", [name for name in CREDIT_METHODS if name != "none"])
def test_fit_every_credit_method(in_workspace, credit):
    before = {n: p.detach().clone() for n, p in build_cli(
        ["--config", str(CONFIGS / "experiment/tiny_smoke.yaml")], run=False).model.policy.named_parameters()}
    cli = fit(f"credit/{credit}")
    client, run = last_run()
    keys = check_common(cli, client, run)
    expected = CREDIT_METRICS.get(credit, set())  # a method not listed: at least one metric of its own
    assert expected <= keys and any(k.startswith(f"{credit}/") for k in keys), sorted(expected - keys)
    assert run.data.params["credit"].startswith(f"[{type(cli.model.credit.methods[0]).__name__}(")
    changed = [n for n, p in cli.model.policy.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "two optimiser steps left every weight unchanged"


EVERY_STEP = """
trainer:
  callbacks:
    - class_path: visgrpo.lightning.callbacks.RolloutTable
      init_args: {every_n_steps: 1, max_rows: 5}
    - class_path: visgrpo.lightning.callbacks.AttentionOverlay
      init_args: {every_n_steps: 1, num_images: 2}
    - class_path: visgrpo.lightning.callbacks.ExportModel
"""


def test_rollout_table_attention_overlays_and_model_artifact(in_workspace):
    (in_workspace / "every_step.yaml").write_text(EVERY_STEP)
    fit(extra=("--config", str(in_workspace / "every_step.yaml")))
    client, run = last_run()
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "rollouts")}
    assert tables == {"rollouts/step_000001.json", "rollouts/step_000002.json"}
    pngs = {a.path for a in client.list_artifacts(run.info.run_id, "attention")}
    # before training, after step 1 and 2 (every step), and at the end; two images each
    tags = ("step000000", "step000001", "step000002", "final")
    assert pngs == {f"attention/{t}_img{k}.png" for t in tags for k in (0, 1)}
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= model_files


def test_base_config_checkpoints_under_the_root_dir(in_workspace):
    cli = fit(extra=("--trainer.default_root_dir", "runs/exp_a"))
    assert cli.trainer.checkpoint_callback.dirpath == str(in_workspace / "runs/exp_a/checkpoints")
    assert (in_workspace / "runs/exp_a/checkpoints/last.ckpt").is_file()
    assert (in_workspace / "runs/exp_a/export/model.safetensors").is_file()
    assert sorted(p.name for p in (in_workspace / "runs/exp_a/attention").glob("final_img*.png")) == [
        f"final_img{k}.png" for k in range(4)
    ]
