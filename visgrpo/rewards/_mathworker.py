"""Child-process side of the math verification pool (``python -m visgrpo.rewards._mathworker``).

Protocol: one JSON object per line on stdin ``{"task": path, "payload": ..., "timeout": s}``;
one JSON line back on stdout ``{"status": "ok"|"timeout"|"error", "result"|"error": ...}``.
The first line written is ``{"status": "ready"}`` once imports are done.

The time limit inside the worker is an interval timer (``signal.setitimer``, this is the
worker's main thread, so signals work) raising :class:`WorkerTimeout`, a ``BaseException``
so that library code catching ``Exception`` cannot swallow it. A computation stuck inside
one C call (e.g. a huge integer power) cannot be interrupted by a signal; the parent then
kills the process after its own deadline (see ``_mathpool.py``). Nothing is ever
``eval``-ed: math-verify parses LaTeX / expressions into sympy objects.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
from typing import Any


class WorkerTimeout(BaseException):
    """Raised by the interval timer inside the worker."""


def _import(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _candidates(text: str, wrap: bool) -> list[str]:
    """Strings to try with ``parse``: bare answers are also tried inside ``$...$``."""
    return [f"${text}$", text] if wrap else [text]


def verify_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Parse gold and prediction with math-verify and compare them.

    Args:
        payload: ``gold``, ``pred`` (str), ``gold_wrap``, ``pred_wrap`` (try ``$...$`` first),
            ``float_rounding`` (int).

    Returns:
        ``{"correct": bool, "reason": str | None}``.
    """
    from math_verify import parse, verify

    def first_parse(text: str, wrap: bool) -> list:
        for cand in _candidates(text, wrap):
            parsed = parse(cand, parsing_timeout=None)
            if parsed:
                return parsed
        return []

    gold = first_parse(payload["gold"], payload.get("gold_wrap", True))
    if not gold:
        return {"correct": False, "reason": "gold answer could not be parsed"}
    pred = first_parse(payload["pred"], payload.get("pred_wrap", False))
    if not pred:
        return {"correct": False, "reason": "no parsable answer"}
    ok = verify(
        gold, pred, float_rounding=int(payload.get("float_rounding", 6)), timeout_seconds=None
    )
    return {"correct": bool(ok), "reason": None if ok else "not equivalent"}


def _on_alarm(signum, frame):
    raise WorkerTimeout()


def run_one(fn, payload: Any, timeout: float | None) -> dict[str, Any]:
    """Run ``fn(payload)`` under an interval timer; never raises."""
    if timeout is not None and timeout <= 0:
        return {"status": "timeout"}
    fired = False
    try:
        if timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        try:
            return {"status": "ok", "result": fn(payload)}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except WorkerTimeout:
        fired = True
    except Exception as exc:  # the worker reports, never dies, on bad input
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"status": "timeout"} if fired else {"status": "error", "error": "unknown"}


def main() -> None:
    """Serve tasks until stdin closes."""
    logging.disable(logging.WARNING)  # math-verify logs every failed parse
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    import math_verify  # noqa: F401  (import cost paid before "ready")

    # Keep a private handle on the pipe and point fd 1 at stderr, so stray prints (from
    # sympy, math-verify or a user task, even at C level) cannot corrupt the protocol.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out.write(json.dumps({"status": "ready"}) + "\n")
    out.flush()
    tasks: dict[str, Any] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        path = msg["task"]
        try:
            fn = tasks.get(path) or tasks.setdefault(path, _import(path))
        except Exception as exc:
            reply = {"status": "error", "error": f"cannot import task {path!r}: {exc}"}
        else:
            reply = run_one(fn, msg["payload"], msg.get("timeout"))
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            text = json.dumps({"status": "error", "error": f"unserialisable result: {exc}"})
        out.write(text + "\n")
        out.flush()


if __name__ == "__main__":
    main()
