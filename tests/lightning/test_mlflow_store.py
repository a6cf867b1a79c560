"""Several ``visgrpo fit`` processes started together on a fresh ``sqlite:///`` MLflow store
(the default logger) all get their run: the store's schema and the experiment are created
once, under ``<db>.lock`` (visgrpo/lightning/mlflow_store.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from visgrpo.lightning.mlflow_store import sqlite_path

from .conftest import CONFIGS

# Each process builds the CLI exactly as `visgrpo fit` does (VisgrpoCLI: config, store
# preparation, logger, trainer, model, data module), waits for the others, then logs through
# the logger: the first use of the store happens in all of them at the same moment.
WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from visgrpo.lightning.cli import build_cli
    go = Path(sys.argv[1])
    Path(sys.argv[2]).touch()
    while not go.exists():
        time.sleep(0.01)
    cli = build_cli(["--config", sys.argv[3], "--trainer.logger.init_args.tracking_uri", sys.argv[4],
                     "--trainer.max_steps", "1"], run=False)
    cli.trainer.logger.log_metrics({"probe": float(sys.argv[5])}, step=0)
    print("RUN", cli.trainer.logger.run_id)
""")


def test_sqlite_path():
    assert sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_path("http://host:5000") is None
    assert sqlite_path("sqlite:///:memory:") is None


def test_four_runs_started_together_on_a_fresh_store(in_workspace):
    work = in_workspace
    uri = f"sqlite:///{work}/mlflow.db"
    go = work / "go"
    env = {**os.environ, "PYTHONPATH": str(CONFIGS.parent), "OMP_NUM_THREADS": "1"}
    procs = []
    for i in range(4):
        ready = work / f"ready{i}"
        procs.append((ready, subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), str(ready), str(CONFIGS / "experiment/tiny_smoke.yaml"), uri,
             str(i)], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.time() + 240
    while not all(r.exists() for r, _ in procs) and time.time() < deadline:
        assert all(p.poll() is None for _, p in procs), [p.communicate()[1][-2000:] for _, p in procs]
        time.sleep(0.05)
    assert not (work / "mlflow.db").exists()  # fresh: no process has touched the store yet
    go.touch()
    outs = [p.communicate(timeout=240) for _, p in procs]
    for (_, p), (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    run_ids = {ln.split()[1] for out, _ in outs for ln in out.splitlines() if ln.startswith("RUN ")}
    assert len(run_ids) == 4

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("visgrpo")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.run_id for r in runs} == run_ids
    assert sorted(r.data.metrics["probe"] for r in runs) == [0.0, 1.0, 2.0, 3.0]
