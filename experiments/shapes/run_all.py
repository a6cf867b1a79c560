"""The full shapes experiment: every method x seed from the warm start, then the report.

``python -m experiments.shapes.run_all`` (from the repository root; ~50 min on 2 CPU cores)
regenerates the data (stage 0, deterministic), validates the committed warm start once
(``method=warmstart``), runs stage 2 for every method of :data:`recipe.METHODS` and every
seed of :data:`recipe.FULL` (``--parallel`` runs at a time, one thread each), and writes the
report to ``experiments/shapes/results``. Per-run logs go to ``runs/shapes_full/logs/``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from experiments.shapes import recipe
from experiments.shapes.report import build_report
from experiments.shapes.stages import Workdir
from experiments.shapes.warmstart import stage0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--methods", default=",".join(recipe.METHODS))
    parser.add_argument("--seeds", default=",".join(map(str, recipe.FULL.seeds)))
    parser.add_argument("--steps", type=int, default=recipe.FULL.steps)
    parser.add_argument("--val-every", type=int, default=recipe.FULL.val_every)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--study", default="full")
    parser.add_argument("--out", default="runs/shapes/results")
    args = parser.parse_args(argv)
    work = Workdir(Path(args.workdir).resolve())
    budget = replace(recipe.FULL, steps=args.steps, val_every=args.val_every,
                     seeds=tuple(int(s) for s in args.seeds.split(",")))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    logs = work.root / "runs" / f"shapes_{args.study}" / "logs"
    t0 = time.time()
    stage0(work, with_model=False)
    print(f"[{time.time() - t0:6.0f}s] stage 0 done (data + masks)", flush=True)
    recipe.validate_warmstart(work, args.study, budget, threads=args.threads, log=logs / "warmstart.log")
    print(f"[{time.time() - t0:6.0f}s] warm start validated", flush=True)
    jobs = [(m, s) for s in budget.seeds for m in methods]

    def one(job):
        method, seed = job
        name = recipe.run_name(method, seed)
        try:
            sec = recipe.rl_run(work, args.study, method, seed, budget, threads=args.threads, log=logs / f"{name}.log")
            print(f"[{time.time() - t0:6.0f}s] {name} done in {sec:.0f}s", flush=True)
        except RuntimeError as err:
            print(f"[{time.time() - t0:6.0f}s] {name} FAILED: {err}", flush=True)

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(one, jobs))
    build_report(work.tracking_uri, Path(args.out), args.study)
    print(f"[{time.time() - t0:6.0f}s] report written to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
