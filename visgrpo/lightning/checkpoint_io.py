"""Checkpoint I/O of the trainer the CLI builds: atomic writes and weights-only loads.

Atomic checkpoint files: a killed run never leaves a truncated ``last.ckpt``.

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

Weights-only checkpoint loading for every checkpoint the CLI reads.

Lightning unpickles ``--ckpt_path`` with ``weights_only=None``, which for a URL means a full
unpickle (a malicious pickle runs its payload). :class:`WeightsOnlyCheckpointIO` is installed
on the trainer the CLI builds (``VisgrpoCLI.instantiate_trainer``); it loads local files and
URLs with ``torch.load(weights_only=True)`` whatever the caller asks, and turns a refusal into
a one-line :class:`~visgrpo.lightning.errors.UnsafeCheckpoint`. The checkpoint's own plain
dataclasses are allow-listed in ``visgrpo.lightning.base``.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import _load, get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from visgrpo.lightning.errors import ConfigError, UnsafeCheckpoint

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


def is_url(path: str | Path) -> bool:
    return str(path).startswith(("http://", "https://"))


def load_weights_only(path: str | Path, map_location: Any = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` of a local file, fsspec path or http(s) URL.

    A URL is downloaded to a private temporary file first (not to torch hub's cache, where two
    URLs with the same file name would share one entry).

    Raises:
        UnsafeCheckpoint: the file holds objects other than tensors, containers and the
            allow-listed dataclasses (loading it would execute code).
    """
    try:
        if is_url(path):
            with tempfile.TemporaryDirectory(prefix="visgrpo-ckpt-") as tmp:
                local = Path(tmp) / "checkpoint"
                urllib.request.urlretrieve(str(path), local)  # noqa: S310 (http(s) only: is_url)
                return torch.load(local, map_location=map_location, weights_only=True)
        return _load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise refusal(path, err) from None


def refusal(path: str | Path, err: BaseException) -> UnsafeCheckpoint:
    """The one-line error for a checkpoint that ``weights_only=True`` refused with ``err``."""
    # torch's message: generic paragraphs around the reason ("Unsupported global: GLOBAL
    # posix.system ...", "Trying to load unsupported GLOBAL ...", "Unsupported operand 149").
    lines = [ln.strip().removeprefix("WeightsUnpickler error:").strip() for ln in str(err).splitlines()]
    reasons = [ln for ln in lines if re.search(r"unsupported", ln, re.I)]
    reason = reasons[0].split(". ")[0] if reasons else "torch.load(weights_only=True) refused it"
    return UnsafeCheckpoint(str(path), f"not a weights-only checkpoint, refused (loading it could run code): {reason}")


class WeightsOnlyCheckpointIO(AtomicCheckpointIO):
    """Atomic writes (:class:`AtomicCheckpointIO`) and loads that are always weights-only
    (``weights_only`` is ignored).
    """

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        if not is_url(path) and not get_filesystem(path).exists(path):
            raise ConfigError("ckpt_path", f"{path}: no such checkpoint file")
        return load_weights_only(path, map_location=map_location)
