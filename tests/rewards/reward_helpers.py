"""Helper module for tests/rewards: user rewards (``module:function``) and worker tasks.

Imported by path after ``monkeypatch.syspath_prepend(<this directory>)``; the math
worker processes inherit that path through PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import os
import time

NOT_CALLABLE = 42


def length_is_even(completion, sample, bonus: float = 1.0):
    """Per-item user reward: ``bonus`` if the completion length is even, else 0 with a reason."""
    if len(completion) % 2 == 0:
        return bonus
    return 0.0, "odd length"


def contains_answer(completions, samples, **kwargs):
    """Batch user reward (TRL convention): 1 where the gold answer occurs in the completion."""
    return [float(str(s["answer"]) in c) for c, s in zip(completions, samples, strict=True)]


def wrong_length(completions, samples):
    """Broken batch reward: one value too few."""
    return [1.0] * (len(completions) - 1)


def raises(completion, sample):
    """User reward that always fails."""
    raise RuntimeError("boom")


def sleepy_verify(payload):
    """Worker task standing in for the verifier: sleeps ``payload['sleep']`` seconds and
    reports its wall-clock interval as the reason ("start,end").
    """
    start = time.time()
    time.sleep(float(payload.get("sleep", 1.0)))
    return {"correct": True, "reason": f"{start},{time.time()}"}


def stuck_task(payload):
    """Worker task that ignores the in-worker timer: only a kill stops it."""
    while True:
        with contextlib.suppress(BaseException):  # swallow the worker's timeout on purpose
            time.sleep(10)


def noisy_task(payload):
    """Worker task printing to stdout (must not corrupt the worker's reply channel)."""
    print("noise on stdout")
    os.write(1, b"raw noise on fd 1\n")
    return {"correct": True, "reason": None}
