"""``visgrpo eval`` with the HF engine, logging each generated prompt id, for the tests that
run it as a real process (SIGKILL and resume; torchrun ranks).

Usage: ``python eval_logged.py LOG DELAY -- <visgrpo eval arguments>``: every generate
call appends its prompt ids to ``LOG.<RANK>`` and then sleeps ``DELAY`` seconds (a slow
model, so a kill lands between batches).
"""

from __future__ import annotations

import os
import sys
import time


class Logged:
    def __init__(self, log: str, delay: float):
        from visgrpo.rollout import build_rollout_engine

        self.inner, self.log, self.delay = build_rollout_engine("hf"), log, delay

    def generate(self, model, processor, prompts, sampling, seed=None):
        out = self.inner.generate(model, processor, prompts, sampling, seed=seed)
        with open(f"{self.log}.{os.environ.get('RANK', '0')}", "a") as fh:
            fh.write(" ".join(s["id"] for s in prompts.samples) + "\n")
        time.sleep(self.delay)
        return out


if __name__ == "__main__":
    from visgrpo.evaluation.cli import main

    log, delay, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: eval_logged.py LOG DELAY -- ARGS"
    sys.exit(main(args, engine=Logged(log, float(delay))))
