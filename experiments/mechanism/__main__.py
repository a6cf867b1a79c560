"""``python -m experiments.mechanism``: the mechanism study, one resumable command.

Stages: the testbed data and evidence masks (``experiments.shapes`` stage 0, deterministic),
the validation of the committed warm start (step 0 of every arm), then every
(configuration, seed) run of :func:`study.configurations` that has no result file yet
(``--parallel`` at a time), then the report (:mod:`experiments.mechanism.report`).
Interrupt it at any point and run the same command again: finished runs are kept.

``--quick`` is the pilot's scale (:data:`study.QUICK`); the default is :data:`study.FULL`.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from experiments.mechanism import report, study, testbed
from experiments.shapes import learning_testbed as learning
from experiments.shapes import prior_testbed as prior
from experiments.shapes.stages import Workdir
from experiments.shapes.warmstart import stage0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".", help="where artifacts/, runs/ and mlflow.db go")
    parser.add_argument("--results", default="runs/mechanism/results",
                        help="per-run JSON results (resume key) and the report")
    parser.add_argument("--quick", action="store_true", help="pilot scale: 3 seeds, 60 steps")
    parser.add_argument("--configs", default="", help="comma-separated subset of the arms (default: all)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the budget's)")
    parser.add_argument("--steps", type=int, default=0, help="override the budget's steps")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--testbed", choices=("shapes", "relational", "learning", "prior"), default="shapes",
                        help="shapes: the committed shapes warm start; relational: build the relational data, "
                             "tiny model and SFT warm start first (experiments/mechanism/testbed.py); learning: "
                             "the shapes data from a warm start with an answer prior; prior: a question-text cue "
                             "right in training, "
                             "wrong on held-out (experiments/learning)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--label", default="", help="heading note of the report (e.g. the pilot's scale)")
    args = parser.parse_args(argv)
    budget = (study.QUICK if args.quick else study.RELATIONAL if args.testbed == "relational"
              else study.LEARNING if args.testbed in ("learning", "prior") else study.FULL)
    if args.seeds:
        budget = replace(budget, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.steps:
        budget = replace(budget, steps=args.steps)
    work = Workdir(Path(args.workdir).resolve())
    results = Path(args.results).resolve()
    st = study.Study(work, results, threads=args.threads)
    if args.testbed == "relational":
        st.extra = testbed.rl_overrides(work)
        st.experiment = "mechanism_relational"
        st.warmstart = testbed.WARMSTART
    elif args.testbed == "learning":
        st.extra = learning.rl_overrides()
        st.experiment = "mechanism_learning"
        st.warmstart = learning.WARMSTART
    elif args.testbed == "prior":
        st.extra = learning.rl_overrides() + prior.data_overrides(work)
        st.experiment = "mechanism_prior"
        st.warmstart = prior.WARMSTART
    arms = study.configurations()
    default = {"relational": list(study.RELATIONAL_ARMS), "learning": list(study.LEARNING_ARMS),
               "prior": list(study.PRIOR_ARMS)}.get(args.testbed, list(arms))
    names = [c.strip() for c in args.configs.split(",") if c.strip()] or default
    unknown = sorted(set(names) - set(arms))
    if unknown:
        raise SystemExit(f"unknown --configs {', '.join(unknown)}; valid: {', '.join(arms)}")
    logs = work.root / "runs" / st.experiment / "logs"
    t0 = time.time()
    if not args.report_only:
        if args.testbed == "relational":
            testbed.build_data(work)
            testbed.warm_start(work, log=logs / "relational_sft.log")
            print(f"[{time.time() - t0:6.0f}s] relational testbed: data, masks and warm start ready", flush=True)
        elif args.testbed == "learning":
            learning.build(work, log=logs / "learning_sft.log")
        elif args.testbed == "prior":
            prior.build(work, log=logs / "prior_sft.log")
        if args.testbed != "relational" and not (work.data / "validation").exists():
            stage0(work, with_model=False)
            print(f"[{time.time() - t0:6.0f}s] testbed data + masks written", flush=True)
        study.warmstart_result(st, budget, log=logs / "warmstart.log")
        print(f"[{time.time() - t0:6.0f}s] warm start validated", flush=True)
        jobs = [(arms[n], s) for n in names for s in budget.seeds]

        def one(job):
            cfg, seed = job
            try:
                res = study.run_one(st, cfg, seed, budget, log=logs / f"{cfg.name}_s{seed}.log")
                word = "skipped (result exists)" if res is None else f"done in {res['seconds']:.0f}s"
                print(f"[{time.time() - t0:6.0f}s] {cfg.name} seed {seed}: {word}", flush=True)
            except Exception as err:  # one failed run must not stop the others; its log has the traceback
                print(f"[{time.time() - t0:6.0f}s] {cfg.name} seed {seed} FAILED: {err}", flush=True)

        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            list(pool.map(one, jobs))
    path = report.build(results, label=args.label, chance=learning.CHANCE)  # 1/6 on every testbed
    print(f"[{time.time() - t0:6.0f}s] report written to {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
