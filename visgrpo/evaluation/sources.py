"""Reading local copies of Hugging Face benchmark datasets: rows and their images.

A benchmark folder is whatever ``huggingface-cli download --repo-type dataset`` (parquet
shards, JSON files, image folders) or ``Dataset.save_to_disk`` left on disk. Nothing is
downloaded. Rows come back as plain dicts; image cells are decoded by :func:`load_image`
from any of the forms these datasets use: a PIL image (``datasets`` decoded it), the
``{"bytes": ..., "path": ...}`` struct of a parquet ``Image`` column, or a path relative
to the benchmark folder.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".parquet", ".arrow", ".json", ".jsonl")


def _split_filter(files: list[Path], split: str | None, strict: bool = False) -> list[Path]:
    """Files of ``split`` (``testmini-00000-of-00001.parquet``, ``testmini.json``, or in a
    ``testmini/`` folder), if any are, else all (none when ``strict``); ``test`` does not
    pick ``testmini-*`` nor ``image`` ``non_image-*``.
    """
    if split is None:
        return files
    chosen = [p for p in files if p.name.startswith((f"{split}-", f"{split}."))
              or p.parent.name == split]
    return chosen if chosen or strict else files


def _from_disk(path: Path, split: str | None, strict: bool = False) -> list[dict]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds)
        if strict and split not in ds:
            return []
        name = split if split in ds else names[0]
        if split is not None and split not in ds and len(names) > 1:
            raise ValueError(f"{path}: no split {split!r}; splits: {', '.join(names)}")
        ds = ds[name]
    return [dict(r) for r in ds]


def _json_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):  # {"id": {...}, ...} (LogicVista's dataset.json) or {"data": [...]}
        if isinstance(data.get("data"), list):
            return list(data["data"])
        return [{"_key": k, **v} for k, v in data.items() if isinstance(v, dict)]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_rows(root: str | Path, split: str | None = None, prefer: tuple[str, ...] = (),
              strict: bool = False, subdir: str | None = None) -> list[dict]:
    """All rows of a local benchmark copy.

    Args:
        root: a ``save_to_disk`` folder, a folder of parquet / JSON files (searched
            recursively), or one such file.
        split: keep the files named after this split (``testmini``) when several exist.
        prefer: file names to use first when present (e.g. ``("testmini.json",)``).
        strict: with ``split``, return no rows (instead of every file) when no file is
            named after the split.
        subdir: read only the files under this sub-folder (a dataset config's folder).

    Raises:
        FileNotFoundError: nothing readable at ``root``.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such benchmark folder or file")
    if root.is_file():
        files = [root]
    elif (root / "dataset_info.json").exists() or (root / "dataset_dict.json").exists():
        return _from_disk(root, split, strict)
    else:
        for name in prefer:
            hits = sorted(root.rglob(name))
            if hits:
                return _rows_of(hits[:1])
        base = root / subdir if subdir else root
        files = sorted(p for p in base.rglob("*") if p.suffix in (".parquet", ".json", ".jsonl")
                       and p.is_file() and not p.name.startswith("."))
        parquet = [p for p in files if p.suffix == ".parquet"]
        files = _split_filter(parquet or files, split, strict)
        if strict and not files:
            return []
    if not files:
        raise FileNotFoundError(f"{root}: no parquet, JSON or save_to_disk dataset found")
    return _rows_of(files)


def _rows_of(files: list[Path]) -> list[dict]:
    rows: list[dict] = []
    for f in files:
        rows.extend(_parquet_rows(f) if f.suffix == ".parquet" else _json_rows(f))
    return rows


@dataclass(frozen=True)
class ImageRef:
    """An image cell decoded only when a batch needs it (benchmarks hold thousands)."""

    value: Any
    root: Path
    where: str
    field: str

    def load(self):
        """The RGB PIL image (see :func:`load_image`)."""
        return load_image(self.value, self.root, self.where, self.field)


def load_image(value: Any, root: Path, where: str, field: str):
    """Decode one image cell to an RGB PIL image.

    Args:
        value: PIL image, ``{"bytes", "path"}`` struct, ``{"zip", "member"}`` (a file in a
            zip archive), or a path (relative to ``root``).
        root: the benchmark folder.
        where: record id for the error message. field: column name.

    Raises:
        ValueError: one line naming the record and field.
    """
    from PIL import Image

    if hasattr(value, "convert") and hasattr(value, "size"):
        return value.convert("RGB")
    try:
        if isinstance(value, dict) and value.get("zip"):
            import zipfile

            with zipfile.ZipFile(value["zip"]) as archive:
                return Image.open(io.BytesIO(archive.read(value["member"]))).convert("RGB")
        if isinstance(value, dict) and value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str) or not path:
            raise ValueError(f"no image in {type(value).__name__} value")
        return Image.open(resolve_path(root, path)).convert("RGB")
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"record {where!r}: field {field!r}: {err}") from None


@lru_cache(maxsize=16)
def _file_index(base: Path) -> dict[str, list[Path]]:
    """File name -> paths under ``base`` (built once per folder)."""
    index: dict[str, list[Path]] = {}
    for f in base.rglob("*"):
        if f.is_file():
            index.setdefault(f.name, []).append(f)
    return index


def resolve_path(root: Path, rel: str) -> Path:
    """``root/rel``, else the one file named ``basename(rel)`` under ``root`` (archives
    are often unpacked one folder deeper than the JSON's paths say).
    """
    p = Path(rel)
    if p.is_absolute() and p.exists():
        return p
    base = root if root.is_dir() else root.parent
    direct = base / rel
    if direct.exists():
        return direct
    hits = _file_index(base).get(p.name, [])
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise FileNotFoundError(f"image {rel} not found under {base}, and its file name is "
                                f"ambiguous: {', '.join(str(h) for h in hits[:3])}")
    raise FileNotFoundError(f"image {rel} not found under {base}")
