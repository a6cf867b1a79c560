"""Atomic dataset output: a failed run leaves nothing at the destination.

Everything is written into a temporary sibling directory that is renamed onto ``out``
only when the writer finishes without an exception. A run killed with SIGKILL cannot clean
up; its hidden work folders (named with the owner's pid and host) are removed by the next
run writing the same output (:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

WORK_KINDS = ("tmp", "old", "shards")  # hidden work folders beside an output directory


def work_prefix(out: Path, kind: str) -> str:
    """Prefix of a hidden work folder of ``out`` owned by this process:
    ``.<name>.<kind>-<pid>@<host>-`` (the owner tells :func:`clean_stale` when it is dead).
    """
    return f".{out.name}.{kind}-{os.getpid()}@{socket.gethostname()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(out: str | Path) -> list[Path]:
    """Remove the work folders of ``out`` left by killed runs; return what was removed.

    Only folders named by :func:`work_prefix` for this output, created on this host by a
    process that no longer exists, are removed: a concurrent run's folders (live pid) and
    other hosts' folders (a shared filesystem) are left alone.
    """
    out = Path(out)
    pattern = re.compile(
        rf"^\.{re.escape(out.name)}\.(?:{'|'.join(WORK_KINDS)})-(\d+)@(.+)-[^-]+$"
    )
    removed = []
    if not out.parent.is_dir():
        return removed
    host = socket.gethostname()
    for p in out.parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir() and m.group(2) == host and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` on success.

    Args:
        out: final directory.
        overwrite: replace an existing ``out``; otherwise an existing one is an error.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=work_prefix(out, "tmp"), dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=work_prefix(out, "old"), dir=out.parent))
        os.rmdir(trash)
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


META_FILE = "visgrpo_meta.json"


def save_dataset(
    ds, out: str | Path, meta: dict | None = None, fmt: str = "arrow", overwrite: bool = False
) -> Path:
    """Save a ``datasets.Dataset`` atomically, with visgrpo metadata beside it.

    Args:
        ds: the dataset.
        out: destination directory.
        meta: dataset-level metadata (e.g. ``{"processor": fingerprint}``), written to
            ``out/visgrpo_meta.json`` for both formats.
        fmt: ``"arrow"`` (``save_to_disk``) or ``"parquet"`` (``out/data.parquet``).
        overwrite: replace an existing ``out``.
    """
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        if fmt == "arrow":
            ds.save_to_disk(str(tmp))
        elif fmt == "parquet":
            ds.to_parquet(str(tmp / "data.parquet"))
        else:
            raise ValueError(f"unknown format {fmt!r}; valid: arrow, parquet")
        (tmp / META_FILE).write_text(json.dumps(meta or {}, indent=2, sort_keys=True))
    return Path(out)


def load_dataset_dir(path: str | Path):
    """Load a dataset written by :func:`save_dataset`; returns ``(dataset, meta)``."""
    import datasets

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset directory")
    meta_path = path / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if (path / "data.parquet").exists():
        ds = datasets.Dataset.from_parquet(str(path / "data.parquet"))
    else:
        ds = datasets.load_from_disk(str(path))
    return ds, meta


def split_dirs(path: str | Path) -> list[str]:
    """Names of the sub-directories of ``path`` that are datasets (``train``, ``validation``...),
    or ``[]`` when ``path`` is one itself (``masks``, ``stats`` and ``validate`` then process
    it split by split).

    Raises:
        FileNotFoundError: ``path`` is not a directory.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset directory")

    def is_dataset(p: Path) -> bool:
        return (p / "dataset_info.json").exists() or (p / "data.parquet").exists()

    if is_dataset(path):
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and is_dataset(p))
