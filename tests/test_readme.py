"""Every command in the README, in docs/*.md and in the experiments' READMEs runs as written in
a fresh clone (``git clone`` of the committed HEAD), in document order (README, data, training,
evaluation, recipes, the other docs, then experiments/*/README.md), with smaller sizes where a
command takes one.

A command that cannot run here is skipped explicitly in :data:`SKIP`, with the reason; a
command that is neither run nor skipped fails the test, and so does a stale entry. So moving
a command between documents never takes it out of testing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_DOCS = ("README.md", "docs/data.md", "docs/training.md", "docs/evaluation.md", "docs/recipes.md")


def documents(root: Path) -> list[Path]:
    """The documents whose commands are tested, in the order they run."""
    first = [root / name for name in FIRST_DOCS]
    rest = sorted(set((root / "docs").glob("*.md")) - set(first))
    return [*first, *rest, *sorted((root / "experiments").glob("*/README.md"))]


# substring of the command -> why it is not run here
SKIP = {
    "pip install": "the package is installed (the suite runs in that environment)",
    "python -m pytest": "the test suite itself",
    "convert coco --instances instances.json": "needs the user's COCO files (tests/data_tools cover convert coco)",
    "convert hf --input ViRL39K/": "needs the downloaded ViRL39K release (tests/data_tools cover the presets)",
    "convert hf --input my_ds/": "needs the user's dataset (tests/data_tools cover convert hf)",
    "convert hf --input PAPO_": "needs the authors' downloaded data (tests/data_tools cover convert hf)",
    "convert hf --input VPPO_": "needs the authors' downloaded data (tests/data_tools cover convert hf)",
    "configs/model/qwen2_5_vl_7b_qlora.yaml --config configs/data": "Qwen2.5-VL-7B from the hub, QLoRA on a CUDA GPU",
    "visgrpo fit --config configs/recipe/": "a published 7B run on 8 GPUs (tests/recipes smoke-fit every recipe)",
    "visgrpo eval --model runs/exp/": "needs downloaded benchmark copies and a trained run "
                                      "(the dry run on the fixtures covers `visgrpo eval`)",
    "torchrun --nproc_per_node 8": "8 GPUs (tests/evaluation run 2 CPU ranks)",
    "python -m experiments.bench": "minutes to hours of benchmarking (tests/bench run each side once)",
    "python -m experiments.gpu_check": "a CUDA GPU with ~50 GiB (tests/experiments run it on the tiny CPU model)",
    "python -m experiments.mechanism": "the study: hours of RL runs (tests/experiments run its stages)",
}
# substring of the command -> (pattern, replacement): smaller sizes for CI
SMALL = {
    "visgrpo-data synth --out data/raw": (r"--num \d+", "--num 24"),
    "visgrpo-data synth --task relational --out": (r"--num \d+", "--num 8"),
    "visgrpo-data synth --task relational --chain": (r"--num \d+", "--num 8"),
    "visgrpo-data synth --out artifacts/shapes_raw": (r"--num \d+", "--num 24"),
    "visgrpo fit --config configs/experiment/tiny_smoke.yaml --config configs/credit/ease.yaml":
        (r"$", " --trainer.max_steps=1 --trainer.val_check_interval=1"),
    "visgrpo eval --model /tmp/tiny-qwen25vl": (r"$", " --limit 1 --no-mlflow"),
}


def readme_commands(text: str) -> list[str]:
    """The commands of a document's fenced ``bash`` blocks (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return commands


def plan(commands: list[str]) -> tuple[list[str], dict[str, str]]:
    """``(commands to run (resized), {skipped command: reason})``."""
    run, skipped = [], {}
    for cmd in commands:
        if cmd in run:  # the same command twice (the tiny-model build): its output is there
            continue
        reason = next((why for key, why in SKIP.items() if key in cmd), None)
        if reason is not None:
            skipped[cmd] = reason
            continue
        for key, (pattern, repl) in SMALL.items():
            if key in cmd:
                cmd = re.sub(pattern, repl, cmd, count=1) if pattern != "$" else cmd.split("#")[0].rstrip() + repl
        run.append(cmd)
    return run, skipped


def all_commands(root: Path) -> list[str]:
    """Every documented command, in the order the fresh-clone test runs them."""
    return [cmd for doc in documents(root) for cmd in readme_commands(doc.read_text())]


def test_every_skip_and_resize_entry_matches_a_readme_command():
    commands = all_commands(REPO)
    for key in [*SKIP, *SMALL]:
        assert any(key in c for c in commands), f"stale entry {key!r}: no README command contains it"


@pytest.mark.slow
def test_readme_commands_run_in_a_fresh_clone(tmp_path):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    assert not (clone / "artifacts").exists()
    commands, skipped = plan(all_commands(clone))
    assert len(commands) >= 10 and len(skipped) >= len(SKIP)
    env = {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1", "VISGRPO_DEBUG": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.time()
    scratch = tmp_path / "scratch"  # the README's /tmp/... paths, private to this test
    scratch.mkdir()
    for cmd in commands:
        cmd = cmd.replace("/tmp/", f"{scratch}/")
        t = time.time()
        out = subprocess.run(["bash", "-c", f"set -eo pipefail; {cmd}"], cwd=clone, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        print(f"{time.time() - t:6.1f}s  {cmd}")
    assert (clone / "artifacts" / "tiny_qwen2_5_vl" / "config.json").exists()  # built on first use
    assert "model:" in (clone / "my_experiment.yaml").read_text()
    assert time.time() - t0 < 600
