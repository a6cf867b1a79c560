"""Entry point of one benchmark worker process (``python -m experiments.bench --worker SPEC``).

It sits above both sides: :mod:`experiments.bench.trl_peer` and
:mod:`experiments.bench.visgrpo_side` import the shared pieces of
:mod:`experiments.bench.harness`, and this module imports all three, so no module of the
benchmark imports one that imports it back. Neither side imports trl or visgrpo's training
stack at import time, so loading both here costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.bench.harness import RunSpec, set_threads
from experiments.bench.trl_peer import run_trl
from experiments.bench.visgrpo_side import run_visgrpo

SIDES = {"trl": run_trl, "visgrpo": run_visgrpo}


def worker_main(spec_path: str) -> int:
    """Run one spec, print ``BENCH_RESULT <json>``."""
    spec = RunSpec(**json.loads(Path(spec_path).read_text()))
    set_threads(spec.threads)
    if spec.side not in SIDES:
        raise ValueError(f"unknown side {spec.side!r}; valid: {', '.join(SIDES)}")
    print("BENCH_RESULT " + json.dumps(SIDES[spec.side](spec)), flush=True)
    return 0
