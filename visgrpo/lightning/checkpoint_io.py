"""Weights-only checkpoint loading for every checkpoint the CLI reads.

Lightning unpickles ``--ckpt_path`` with ``weights_only=None``, which for a URL means a full
unpickle (a malicious pickle runs its payload). :class:`WeightsOnlyCheckpointIO` is installed
on the trainer the CLI builds (``VisgrpoCLI.instantiate_trainer``); it loads local files and
URLs with ``torch.load(weights_only=True)`` whatever the caller asks, and turns a refusal into
a one-line :class:`~visgrpo.lightning.errors.UnsafeCheckpoint`. The checkpoint's own plain
dataclasses are allow-listed in ``visgrpo.lightning.base``.
"""

from __future__ import annotations

import pickle
import re
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _load, get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from visgrpo.lightning.errors import ConfigError, UnsafeCheckpoint


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


class WeightsOnlyCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose loads are always weights-only (``weights_only`` is ignored)."""

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        if not is_url(path) and not get_filesystem(path).exists(path):
            raise ConfigError("ckpt_path", f"{path}: no such checkpoint file")
        return load_weights_only(path, map_location=map_location)
