"""SIGKILL a ``visgrpo fit`` at chosen and at random moments, including in the middle of a
checkpoint write; ``--ckpt_path last`` then resumes from the last complete checkpoint and the
run ends exactly like an uninterrupted one (final weights, per-step rewards).

Each kill point prints one row ``kill point | checkpoint found | resumed step | equal``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from visgrpo.lightning.checkpoint_io import TMP_MARK

from .conftest import CONFIGS
from .test_resume import reward_history

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("kill_fit.py")
MAX_STEPS = 4
CKPT_EVERY_STEP = """
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        dirpath: runs/checkpoints
        save_last: true
        save_top_k: 0
        every_n_train_steps: 1
"""


def start(work: Path, slow_save: int = 0, resume: bool = False) -> subprocess.Popen:
    (work / "ckpt.yaml").write_text(CKPT_EVERY_STEP)
    args = [
        "fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"), "--config", str(work / "ckpt.yaml"),
        "--trainer.logger.init_args.tracking_uri", f"sqlite:///{work}/mlflow.db",
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", str(MAX_STEPS),
        *(["--ckpt_path", "last"] if resume else []),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[2]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(work / "steps.log"), str(slow_save), *args],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "stderr.log", "a"),
    )


def steps(work: Path, log: str = "steps.log") -> list[int]:
    """The global steps whose training_step started (``saves``: whose checkpoint save began)."""
    path = work / log
    return [int(s) for s in path.read_text().split()] if path.exists() else []


def wait(proc: subprocess.Popen, until, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not until():
        assert proc.poll() is None, "the run ended before its kill point"
        assert time.monotonic() < end, "kill point not reached"
        time.sleep(0.05)


def finish(proc: subprocess.Popen, work: Path) -> None:
    assert proc.wait(timeout=600) == 0, (work / "stderr.log").read_text()[-4000:]


def ckpt_step(path: Path) -> int | None:
    return torch.load(path, weights_only=True)["global_step"] if path.exists() else None


def new_work(root: Path, workspace: Path, name: str) -> Path:
    work = root / name
    work.mkdir()
    (work / "artifacts").symlink_to(workspace / "artifacts", target_is_directory=True)
    return work


def _after_step(k: int, delay: float):
    """Kill condition: ``delay`` seconds after training step ``k`` began."""
    seen: dict[str, float] = {}

    def cond(work: Path, t0: float) -> bool:
        if len(steps(work)) > k:
            seen.setdefault("t", time.monotonic())
        return "t" in seen and time.monotonic() >= seen["t"] + delay

    return cond


def test_sigkill_then_resume_equals_uninterrupted(workspace, tmp_path):
    straight = new_work(tmp_path, workspace, "straight")
    t0 = time.monotonic()
    finish(start(straight), straight)
    duration = time.monotonic() - t0
    last = straight / "runs/checkpoints/last.ckpt"
    ref = torch.load(last, weights_only=True)
    assert ref["global_step"] == MAX_STEPS and steps(straight) == list(range(MAX_STEPS))
    ref_rewards = reward_history(straight)
    assert sorted(ref_rewards) == list(range(MAX_STEPS))

    rng = np.random.default_rng(0)
    # (name, slow_save, condition to kill at: called with the work dir and the start time)
    points = [
        ("after step 1", 0, lambda w, t0: len(steps(w)) >= 2),
        ("after step 3", 0, lambda w, t0: len(steps(w)) >= 4),
        ("during write 1 (no ckpt yet)", 1, lambda w, t0: (w / "steps.log.slow").exists()),
        ("during write 3", 3, lambda w, t0: (w / "steps.log.slow").exists()),
    ]
    # Random moments: a random delay after step k began, k in 1..MAX_STEPS - 2, so at least
    # two steps and their checkpoint writes still follow whatever the machine's load (a delay
    # counted from the process start could fall after its end when the box gets faster).
    step_time = duration / (MAX_STEPS + 1)  # an upper bound: the run also starts up
    for k, delay in zip(rng.integers(1, MAX_STEPS - 1, size=3), rng.uniform(0.0, 0.5, size=3) * step_time,
                        strict=True):
        points.append((f"{delay:.1f}s into step {k}", 0, _after_step(int(k), float(delay))))
    rows = []
    for i, (name, slow_save, cond) in enumerate(points):
        work = new_work(tmp_path, workspace, f"kill{i}")
        proc = start(work, slow_save)
        wait(proc, lambda work=work, cond=cond, t0=time.monotonic(): cond(work, t0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = work / "runs/checkpoints/last.ckpt"
        found = ckpt_step(ckpt)  # loads completely, or raises: never truncated
        ran_before, saves = steps(work), steps(work, "steps.log.saves")
        if slow_save:  # killed inside save number slow_save: the previous save is the one found
            assert len(saves) == slow_save and found == (saves[-2] if slow_save > 1 else None), saves
            assert list(work.glob(f"runs/checkpoints/.last.ckpt{TMP_MARK}*"))  # the half-written file
        else:  # the last save begun, or the one before if the kill landed inside it
            assert found in ([None, *saves][-2:]), saves
        (work / "steps.log").unlink(missing_ok=True)  # a kill during start-up ran no step

        finish(start(work, resume=True), work)
        resumed = steps(work)
        # the resumed process ran only the steps after the checkpoint it found
        assert resumed == list(range(found or 0, MAX_STEPS)), (name, found, resumed)
        assert not list(work.glob(f"runs/checkpoints/.*{TMP_MARK}*"))  # stale temp files cleaned
        out = torch.load(ckpt, weights_only=True)
        assert out["global_step"] == MAX_STEPS
        assert out["state_dict"].keys() == ref["state_dict"].keys()
        for k, v in ref["state_dict"].items():
            torch.testing.assert_close(out["state_dict"][k], v, rtol=0, atol=1e-6, msg=f"{name}: {k}")
        rewards = reward_history(work)
        assert rewards == pytest.approx(ref_rewards, abs=1e-6), name
        rows.append(f"{name:30s} | {found if found is not None else 'none':>5} | "
                    f"{resumed[0] if resumed else 'none (done)'} "
                    f"| equal (before the kill: steps {ran_before}, saves begun at steps {saves})")
        print("\nKILL ROW", rows[-1], flush=True)
    print("\nkill point | checkpoint found (global_step) | resumed at step | final weights & rewards")
    print("\n".join(rows))
