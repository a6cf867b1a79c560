"""``visgrpo fit`` as a process to SIGKILL (run by tests/lightning/test_kill_resume.py).

``python kill_fit.py STEPS_LOG SLOW_SAVE visgrpo-args...``: every ``training_step`` appends
its ``global_step`` to STEPS_LOG (so the test sees which steps ran in which process), every
checkpoint save appends ``save <global_step>`` to STEPS_LOG + ``.saves``; with
SLOW_SAVE = n > 0 the n-th checkpoint write writes half of its bytes, flushes them and then
sleeps (after creating STEPS_LOG + ``.slow``), so the test can kill the process in the middle
of that write.
"""

from __future__ import annotations

import os
import sys
import time

from visgrpo.cli import main
from visgrpo.lightning.checkpoint_io import AtomicCheckpointIO
from visgrpo.lightning.rlvr import RLVRModule


def patch(steps_log: str, slow_save: int) -> None:
    train_step = RLVRModule.training_step

    def logged(self, batch, batch_idx):
        with open(steps_log, "a") as f:
            f.write(f"{self.global_step}\n")
        return train_step(self, batch, batch_idx)

    RLVRModule.training_step = logged
    saves = [0]
    write, save = AtomicCheckpointIO._write, AtomicCheckpointIO.save_checkpoint

    def logged_save(self, checkpoint, path, storage_options=None):
        with open(steps_log + ".saves", "a") as f:
            f.write(f"{checkpoint['global_step']}\n")
        return save(self, checkpoint, path, storage_options)

    def slow(f, data):
        saves[0] += 1
        if saves[0] != slow_save:
            return write(f, data)
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        open(steps_log + ".slow", "w").close()  # tells the test: half written, kill now
        time.sleep(600)  # killed here
        f.write(data[len(data) // 2:])

    AtomicCheckpointIO._write = staticmethod(slow)
    AtomicCheckpointIO.save_checkpoint = logged_save


if __name__ == "__main__":
    patch(sys.argv[1], int(sys.argv[2]))
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    raise SystemExit(main())
