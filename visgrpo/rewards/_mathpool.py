"""A pool of math-verification worker processes with a hard per-task time limit.

Why processes: math-verify's own timeout uses ``signal.alarm``, which only works in the
main thread, and sympy can spend unbounded time on adversarial input (``9^9^9^9``, a
100 000-digit number, LaTeX nested hundreds deep) inside calls a signal cannot interrupt.
Each worker is a fresh interpreter (``python -m visgrpo.rewards._mathworker``, no fork of
the training process, no torch import) speaking JSON lines over pipes. A task gets
``timeout`` seconds inside the worker (interval timer); if the worker has not answered by
``timeout + kill_grace`` the parent kills it and starts a fresh one on next use. Either
way the caller gets ``{"status": "timeout"}``.

The pool is thread-safe: callers in different threads (the reward head scores a batch in a
thread pool) each borrow an idle worker, so a batch is verified ``size`` tasks at a time.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import selectors
import subprocess
import sys
import threading
import time
from typing import Any

DEFAULT_TASK = "visgrpo.rewards._mathworker:verify_task"


class WorkerStartError(RuntimeError):
    """A worker process did not come up (its stderr is inherited: see the log above)."""


class _Worker:
    def __init__(self, start_timeout: float) -> None:
        env = dict(os.environ)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "visgrpo.rewards._mathworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self._buf = b""
        msg = self.read(time.monotonic() + start_timeout)
        if msg is None or msg.get("status") != "ready":
            self.kill()
            raise WorkerStartError(f"math worker did not start within {start_timeout} s ({msg})")

    def read(self, deadline: float) -> dict | None:
        """Next JSON line from the worker, or ``None`` at the deadline or on EOF."""
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def send(self, msg: dict) -> None:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class MathPool:
    """Worker processes running ``task(payload)`` under a hard time limit.

    Args:
        size: maximum number of worker processes (started lazily).
        task: ``module:function`` run in the worker (default: math-verify comparison).
        kill_grace: seconds after ``timeout`` before an unresponsive worker is killed.
        start_timeout: seconds a new worker may take to import math-verify.
    """

    def __init__(
        self,
        size: int = 2,
        task: str = DEFAULT_TASK,
        kill_grace: float = 1.0,
        start_timeout: float = 120.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"MathPool size must be >= 1, got {size}")
        self.size, self.task = int(size), task
        self.kill_grace, self.start_timeout = float(kill_grace), float(start_timeout)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._alive = 0
        self._closed = False
        self.kills = 0  # workers killed after a missed deadline (for tests / metrics)
        _POOLS.append(self)

    def _acquire(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise RuntimeError("MathPool is closed")
            spawn = self._alive < self.size
            if spawn:
                self._alive += 1
        if not spawn:
            return self._idle.get()
        try:
            return _Worker(self.start_timeout)
        except BaseException:
            with self._lock:
                self._alive -= 1
            raise

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._alive -= 1

    def run(self, payload: Any, timeout: float | None = 5.0, task: str | None = None) -> dict:
        """Run one task; returns the worker's reply (``status`` ok / timeout / error).

        Blocks until a worker is free, then at most ``timeout + kill_grace`` seconds.
        """
        worker = self._acquire()
        msg = {"task": task or self.task, "payload": payload, "timeout": timeout}
        try:
            worker.send(msg)
            limit = float("inf") if timeout is None else timeout + self.kill_grace
            reply = worker.read(time.monotonic() + limit)
        except (OSError, ValueError) as exc:
            self._discard(worker)
            return {"status": "error", "error": f"math worker failed: {exc}"}
        if reply is None:
            alive = worker.proc.poll() is None
            self._discard(worker)
            if alive:
                self.kills += 1
                return {"status": "timeout"}
            return {"status": "error", "error": f"math worker exited ({worker.proc.returncode})"}
        self._idle.put(worker)
        return reply

    def close(self) -> None:
        """Stop every idle worker (busy ones stop when their task returns or is killed)."""
        with self._lock:
            self._closed = True
        while True:
            try:
                w = self._idle.get_nowait()
            except queue.Empty:
                break
            w.close()
            with self._lock:
                self._alive -= 1


_POOLS: list[MathPool] = []
_DEFAULT: MathPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> MathPool:
    """The process-wide pool (size ``$VISGRPO_MATH_WORKERS``, default min(4, cpu count))."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            size = int(os.environ.get("VISGRPO_MATH_WORKERS", min(4, os.cpu_count() or 1)))
            _DEFAULT = MathPool(size=size)
        return _DEFAULT


@atexit.register
def _close_all() -> None:
    for pool in _POOLS:
        pool.close()
