"""Atomic checkpoint files: a killed run never leaves a truncated ``last.ckpt``.

Lightning's :class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` (2.6) serialises
to memory, then writes through an fsspec transaction whose temporary file lies in ``$TMPDIR``:
the final ``shutil.move`` is a rename only when ``$TMPDIR`` and the checkpoint directory share
a filesystem (otherwise it copies into the target, so a kill leaves a truncated file), nothing
is fsync'ed, and a killed write leaves its temporary file behind in ``$TMPDIR``.

:class:`AtomicCheckpointIO` changes only ``save_checkpoint`` for local paths: the bytes go to a
hidden temporary file next to the target (``.<name>.tmp-<pid>``, which ``--ckpt_path last``'s
``last*.ckpt`` pattern never matches), are fsync'ed, and replace the target with
``os.replace``; the directory is fsync'ed after. A reader therefore sees the previous complete
checkpoint or the new complete one. Leftover temporary files of killed writes to the same
target are removed at the next save. Remote paths (``s3://``...) keep Lightning's own write.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

TMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The hidden temporary file of a write to ``path`` by this process."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic (temp file, fsync, ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Writes ``checkpoint`` to ``path`` atomically (local paths; others as Lightning does)."""
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(os.fspath(path)).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}{TMP_MARK}*"):
            stale.unlink(missing_ok=True)  # a killed earlier write to this target
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        tmp = temp_path(target)
        try:
            with open(tmp, "wb") as f:
                self._write(f, buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    @staticmethod
    def _write(f, data: memoryview) -> None:
        """Writes the serialised bytes (one call; tests slow it down to kill mid-write)."""
        f.write(data)


def with_atomic_io(plugins: Any) -> list:
    """``plugins`` (None, one plugin or a list) plus an :class:`AtomicCheckpointIO` unless one
    of them already is a ``CheckpointIO``."""
    out = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in out):
        out.append(AtomicCheckpointIO())
    return out
