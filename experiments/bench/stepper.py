"""A long-lived benchmark worker that trains one optimiser step per command (the scaling runner's
interleaved protocol, experiments/bench/scaling.py).

``python -m experiments.bench.stepper SPEC.json``: builds the side's trainer (visgrpo:
``RLVRModule`` under Lightning, :mod:`experiments.bench.visgrpo_side`; TRL: ``GRPOTrainer``,
:mod:`experiments.bench.trl_peer`) and starts training; before every step it prints ``READY``
and blocks on stdin for one command:

* ``go LABEL``: run one whole training step (prompt batch -> generation -> rewards ->
  forward/backward -> optimiser). On the visgrpo side ``LABEL`` picks the credit
  configuration of that step (``plain``, ``plain_control``: plain again under a second
  label, the A/A control, or a credit method's registry name; ``RLVRModule.set_credit``
  switches it between steps). Then it prints ``STEP {json}``: the step's process CPU and
  wall seconds, responses and response tokens;
* ``stop``: exit.

A step is timed from the command to the end of the optimiser step, so the worker's idle time
between commands (while the other configurations run) is never counted. Responses are forced
to the full ``max_completion_length`` on both sides (``min_new_tokens`` added to every
``generate`` call): a random-weight model would otherwise stop at a random EOS and the
configurations would do different amounts of work.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from experiments.bench.harness import RunSpec, set_threads


def force_lengths(n: int) -> None:
    """Every ``transformers`` ``generate`` call of this process decodes at least ``n`` tokens."""
    from transformers.generation.utils import GenerationMixin

    original = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        kwargs["min_new_tokens"] = n
        return original(self, *args, **kwargs)

    GenerationMixin.generate = generate


class Baton:
    """Blocks for the coordinator's command before a step and reports the step after it."""

    def __init__(self) -> None:
        self.label = ""
        self.t0 = self.c0 = 0.0

    def wait(self) -> str:
        print("READY", flush=True)
        line = sys.stdin.readline().split()
        if not line or line[0] == "stop":
            sys.stdout.flush()
            os._exit(0)  # no teardown: the trainers would finish their epoch otherwise
        self.label = line[1] if len(line) > 1 else ""
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self.label

    def report(self, samples: int, tokens: int) -> None:
        cpu, wall = time.process_time() - self.c0, time.perf_counter() - self.t0
        print("STEP " + json.dumps({"label": self.label, "cpu_s": cpu, "wall_s": wall,
                                    "samples": samples, "tokens": tokens}), flush=True)


def run_visgrpo(spec: RunSpec) -> None:
    import lightning as L

    from experiments.bench.visgrpo_side import build_datamodule, build_module, build_trainer
    from visgrpo.credit.base import build_credit

    baton = Baton()
    credits: dict = {}  # label -> ComposedCredit, built once

    class Step(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            label = baton.wait()
            if label not in credits:
                credits[label] = build_credit([] if label.startswith("plain") else [label])
            pl_module.set_credit(credits[label])
            baton.t0, baton.c0 = time.perf_counter(), time.process_time()  # credit setup excluded

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            ro = pl_module.last_rollout
            baton.report(0 if ro is None else ro.batch_size, 0 if ro is None else int(ro.response_mask.sum()))

    module = build_module(spec)
    trainer = build_trainer(spec, [Step()])
    trainer.fit(module, datamodule=build_datamodule(spec, module))


def run_trl(spec: RunSpec) -> None:
    import tempfile

    from transformers import TrainerCallback

    from experiments.bench.trl_peer import build_trainer

    baton = Baton()
    holder: dict = {}
    samples = spec.prompts_per_step * spec.group_size

    class Step(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            baton.wait()

        def on_step_end(self, args, state, control, **kwargs):
            log = holder["tokens"]
            baton.report(samples, log[-1] if log else 0)

    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        trainer, holder["tokens"] = build_trainer(spec, out, [Step()])
        trainer.train()


def main(spec_path: str) -> None:
    spec = RunSpec(**json.loads(Path(spec_path).read_text()))
    set_threads(spec.threads)
    force_lengths(spec.max_completion_length)
    {"visgrpo": run_visgrpo, "trl": run_trl}[spec.side](spec)
    print("READY", flush=True)  # training ended (max_steps): the coordinator sees EOF next
    sys.stdin.readline()


if __name__ == "__main__":
    main(sys.argv[1])
