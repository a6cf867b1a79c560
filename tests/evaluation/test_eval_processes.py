"""``visgrpo eval`` as real processes (issue 23, items 5 and 6).

* SIGKILL in the middle of a run, rerun the same command: it resumes from the journal,
  generates only the batches that were not journaled, and ends exactly like a run that
  was never killed (predictions and table, byte for byte).
* ``torchrun --nproc_per_node 2`` on CPU: the merged predictions and table equal the
  one-process run's (a batch samples with the same seed on any rank).

Both compare with one uninterrupted one-process run, avg@2 sampling in batches of 2.

Every run is a subprocess with one thread (``OMP_NUM_THREADS=1``), so all see the same
floating-point reductions. Tiny Qwen2.5-VL, 4 benchmarks (a grounding one included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.evaluation.fixtures import BUILDERS
from visgrpo.evaluation.benchmarks import load_benchmark
from visgrpo.evaluation.ranks import n_batches

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("eval_logged.py")
REPO = SCRIPT.parents[2]
NAMES = ["mathvista_testmini", "pope", "refcoco", "mmstar"]
LIMIT = 3  # items per benchmark (at most)
# Batches of 2, 2 samples at T=1.
EXTRA = ("--batch-size", "2", "--protocol", "avg@2", "--limit", str(LIMIT))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for name in NAMES:
        BUILDERS[name](root / name)
    return root


@pytest.fixture(scope="module")
def batches(data_root) -> list[int]:
    """Batches per benchmark (the fixtures' sizes, limited)."""
    return [n_batches(len(load_benchmark(name, data_root / name, LIMIT)), 2) for name in NAMES]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def command(model, root, out, log, delay=0.0, launcher=()) -> list[str]:
    return [sys.executable, *launcher, str(SCRIPT), str(log), str(delay), "--",
            "--model", model, "--data-root", str(root), "--benchmarks", *NAMES, "--out", str(out),
            "--no-mlflow", "--no-progress", "--max-new-tokens", "5", *EXTRA]


def run(cmd, work: Path) -> None:
    proc = subprocess.run(cmd, cwd=work, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def journaled(out: Path) -> dict[str, set[int]]:
    """Batches in the journal per benchmark (complete lines only)."""
    found: dict[str, set[int]] = {}
    for part in sorted(out.glob("progress/*/part-*.jsonl")):
        lines = part.read_bytes().split(b"\n")[:-1]  # a torn last piece has no newline
        found.setdefault(part.parent.name, set()).update(
            json.loads(x)["batch"] for x in lines[1:])
    return found


def generated(log: Path) -> list[list[str]]:
    logs = sorted(log.parent.glob(log.name + ".*"))
    return [line.split() for f in logs for line in f.read_text().splitlines()]


def outputs(out: Path) -> tuple[str, str]:
    return (out / "predictions.jsonl").read_text(), (out / "results.csv").read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root, tiny_model_dirs) -> tuple[str, str]:
    """One process, never killed."""
    work = tmp_path_factory.mktemp("reference")
    run(command(tiny_model_dirs["qwen2_5_vl"], data_root, work / "out", work / "log"), work)
    preds = [json.loads(x) for x in outputs(work / "out")[0].splitlines()]
    assert {p["benchmark"] for p in preds} == set(NAMES)
    assert all(len(p["completions"]) == 2 for p in preds)
    return outputs(work / "out")


def test_sigkill_mid_run_then_rerun_resumes_without_regenerating(tmp_path, data_root, tiny_model_dirs,
                                                                   reference, batches):
    total = sum(batches)
    assert total >= 5
    model = tiny_model_dirs["qwen2_5_vl"]
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    proc = subprocess.Popen(command(model, data_root, out, log, delay=0.5), cwd=tmp_path,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while sum(map(len, journaled(out).values())) < 3:  # into the second benchmark
        assert proc.poll() is None, "the run ended before its kill point"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = journaled(out)
    assert 3 <= sum(map(len, before.values())) < total and not (out / "results.md").exists()
    with open(sorted(out.glob("progress/*/part-*.jsonl"))[-1], "ab") as fh:  # a kill mid-append
        fh.write(b'{"batch": 1, "items": [{"id": "2", "compl')

    first_log_lines = len(generated(log))
    run(command(model, data_root, out, log), tmp_path)
    resumed = generated(log)[first_log_lines:]
    assert len(resumed) == total - sum(map(len, before.values()))  # nothing journaled is redone
    assert outputs(out) == reference


def test_two_cpu_ranks_merge_to_the_one_process_result(tmp_path, data_root, tiny_model_dirs,
                                                       reference, batches):
    model = tiny_model_dirs["qwen2_5_vl"]
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    run(command(model, data_root, tmp_path / "two", tmp_path / "two.log", launcher=torchrun),
        tmp_path)
    per_rank = [len((tmp_path / f"two.log.{r}").read_text().splitlines()) for r in (0, 1)]
    assert per_rank == [sum((n + 1) // 2 for n in batches), sum(n // 2 for n in batches)]  # round robin
    split = [name for name, n in zip(NAMES, batches, strict=True) if n >= 2]
    assert split
    for name in split:  # each rank journaled its own batches
        parts = sorted(p.name for p in (tmp_path / "two" / "progress" / name).iterdir())
        assert parts == ["part-000.jsonl", "part-001.jsonl"]
    assert outputs(tmp_path / "two") == reference
