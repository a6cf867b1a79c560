"""Data parallelism through Lightning's own ``ddp`` strategy (2 CPU processes, gloo): the
losses are normalised over the global batch (policy loss and EASE's auxiliary loss), so two
ranks of 2 prompts train exactly like one process of 4 prompts.

The same holds with the policy's parameters sharded by torch's FSDP2 (``fully_shard``, through
Lightning's ``ModelParallelStrategy``; Lightning's ``FSDPStrategy`` refuses a CPU
accelerator): gradients are reduce-scattered instead of all-reduced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ddp_fit.py")


def run(work: Path, devices: int, batch_size: int, strategy: str = "ddp") -> dict:
    out = work / f"weights_{devices}_{strategy}.pt"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(work), str(devices), str(batch_size), str(out), strategy],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(out, weights_only=True)


def test_two_ranks_equal_one_process(workspace, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "artifacts").symlink_to(workspace / "artifacts", target_is_directory=True)
    assert_same_training(work, run(work, devices=1, batch_size=4), run(work, devices=2, batch_size=2))


def test_fsdp2_two_ranks_equal_one_process(workspace, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "artifacts").symlink_to(workspace / "artifacts", target_is_directory=True)
    one = run(work, devices=1, batch_size=4)
    assert_same_training(work, one, run(work, devices=2, batch_size=2, strategy="fsdp2"))


def assert_same_training(work: Path, one: dict, two: dict) -> None:
    """The same gradients at each step and (up to AdamW's amplified float noise) weights."""
    assert len(one["grads"]) == len(two["grads"]) == 2  # one optimiser step per RL step
    for step, (g1, g2) in enumerate(zip(one["grads"], two["grads"], strict=True)):
        assert g1.keys() == g2.keys() and len(g1) > 0
        scale = max(g.abs().max().item() for g in g1.values())
        assert scale > 0
        for k in g1:  # float reduction order differs across ranks: 1e-4 of the largest entry
            torch.testing.assert_close(g2[k], g1[k], rtol=1e-3, atol=1e-4 * scale,
                                       msg=lambda m, k=k, step=step: f"step {step} {k}: {m}")
    # AdamW amplifies float noise in near-zero gradients, so the weights agree less tightly.
    from transformers import AutoModelForImageTextToText

    init = AutoModelForImageTextToText.from_pretrained(work / "artifacts/tiny_qwen2_5_vl").state_dict()
    moved = max((one["state"][k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-4
    for k in one["state"]:
        torch.testing.assert_close(two["state"][k], one["state"][k], rtol=0, atol=0.05 * moved)
