"""Shared machinery of the ``convert`` sub-commands.

* Images are **embedded** (their file bytes go into the ``image`` column), so a converted
  dataset is self-contained for both ``--format arrow`` and ``--format parquet``. The size
  (``width``, ``height``) is read from the image header (PIL opens lazily, without decoding
  pixels); ``--check-images verify`` (default) additionally runs PIL's ``verify()`` (chunk
  CRCs, structure) and ``decode`` fully decodes each image.
* Orientation (one rule, :mod:`visgrpo.data.images`): an image with an EXIF orientation
  other than 1 is stored as upright 8-bit RGB PNG without EXIF (``--exif apply``, default:
  boxes refer to the displayed image, as annotation tools show it) or as its raw pixel
  array without the tag (``--exif ignore``: boxes refer to the stored pixels); ``width``/
  ``height`` are those of the stored pixels, so every later decoder sees the same frame.
* Images above ``--max-image-pixels`` are refused from their header (bounded memory).
* Image paths must stay inside ``--image-root`` (no ``..``, no absolute path elsewhere),
  unless ``--allow-outside-root``; the check is lexical, so symlinks the user placed under
  the root are followed.
* Records are streamed into Arrow shards in a temporary directory beside ``--out`` (so
  memory stays bounded by one shard), then saved atomically with
  :func:`visgrpo.data.io.save_dataset`: a failed run leaves nothing at ``--out``.
* ``--on-error skip`` drops bad records and writes the :class:`~data_tools.errors.ErrorReport`
  to ``<OUT>.errors.json`` beside the output directory (also when no dataset could be
  written, which is why it is not inside ``OUT``); its summary is printed and also stored in
  ``OUT/visgrpo_meta.json`` under ``"convert"``.
* Optional ``segmentation`` column (``convert coco``/``refcoco``, or ``convert jsonl
  --segmentation-field``): one COCO segmentation per box as JSON text, ``""`` for a box
  without one (format and checks: :mod:`data_tools.segmentation`). The column is absent
  when no record has segmentation.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np

from data_tools.errors import ErrorReport, RecordError, handle
from data_tools.segmentation import FEATURE as SEGMENTATION_FEATURE
from visgrpo.data.images import (
    DEFAULT_MAX_PIXELS,
    EXIF_MODES,
    ImageError,
    ImageTooLarge,
    normalise_orientation,
    open_image,
)
from visgrpo.data.io import clean_stale, save_dataset, work_prefix
from visgrpo.data.schema import ANSWER_TYPES, BASE_FEATURES

SHARD_SIZE = 2000  # records per temporary Arrow shard


def add_output_arguments(parser, source_default: str) -> None:
    """Arguments every converter shares: output, format, errors, images, progress."""
    parser.add_argument(
        "--out", required=True, help="output dataset directory (must not exist unless --overwrite)"
    )
    parser.add_argument(
        "--format",
        choices=("arrow", "parquet"),
        default="arrow",
        help="arrow: datasets save_to_disk; parquet: OUT/data.parquet (default arrow)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="raise: stop at the first bad record (default); skip: drop it and report "
        "counts and reasons (printed and written to <OUT>.errors.json)",
    )
    parser.add_argument(
        "--source",
        default=source_default,
        help=f"value of the source column (default {source_default})",
    )
    parser.add_argument(
        "--check-images",
        choices=("header", "verify", "decode"),
        default="verify",
        help="header: read the size only; verify: also PIL verify() (default); decode: full decode",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images with more pixels than this (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--exif",
        choices=EXIF_MODES,
        default="apply",
        help="apply: store EXIF-rotated images upright, boxes in the displayed frame (default); "
        "ignore: boxes refer to the raw pixels; either way the orientation tag is dropped",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept image paths outside --image-root ('..' or absolute paths elsewhere)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def image_path(root: Path, name: str, where: str, field: str, allow_outside: bool) -> Path:
    """``name`` resolved under ``root``; a path leaving ``root`` is a :class:`RecordError`.

    The check is lexical (``..`` and absolute paths), so a dataset file cannot reach other
    files, while symlinks the user placed under ``root`` are still followed.
    """
    path = Path(name) if Path(name).is_absolute() else root / name
    if not allow_outside:
        base = Path(os.path.abspath(root))
        if not Path(os.path.abspath(path)).is_relative_to(base):
            raise RecordError(
                where,
                field,
                f"image path {name!r} is outside --image-root {str(root)!r} "
                "(pass --allow-outside-root to accept it)",
            )
    return path


def read_image(
    path: str | Path,
    where: str,
    check: str = "verify",
    field: str = "image",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif: str = "apply",
) -> tuple[bytes, int, int]:
    """Read an image file's bytes and its size, with its EXIF orientation resolved.

    Returns:
        ``(bytes, width, height)``: the file's bytes when its orientation is 1, else the
        re-encoded pixels (:func:`visgrpo.data.images.normalise_orientation`).

    Raises:
        RecordError: missing, unreadable, corrupt or too large file (field ``image``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(where, field, f"image file not found: {path}") from None
    except OSError as e:
        raise RecordError(where, field, f"cannot read image file: {path}: {e}") from None
    return image_bytes(data, where, check, field, max_pixels, exif, name=str(path))


def image_bytes(
    data: bytes,
    where: str,
    check: str = "verify",
    field: str = "image",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif: str = "apply",
    name: str = "embedded image",
) -> tuple[bytes, int, int]:
    """An encoded image's size, checked (``check``: header, verify or decode) and with its
    EXIF orientation resolved: the one path for files (:func:`read_image`) and for bytes
    embedded in a dataset cell.

    Raises:
        RecordError: corrupt, unsupported or too large image (``name`` in the message).
    """
    try:
        with open_image(data, max_pixels) as im:
            width, height = im.size
            if check == "verify":
                im.verify()
            elif check == "decode":
                im.load()
    except ImageTooLarge as e:
        raise RecordError(where, field, f"image too large: {name}: {e}") from None
    except ImageError as e:
        raise RecordError(where, field, f"corrupt or unsupported image: {name}: {e}") from None
    except Exception as e:  # PIL raises many types for bad files
        raise RecordError(
            where, field, f"corrupt or unsupported image: {name}: {type(e).__name__}: {e}"
        ) from None
    if width <= 0 or height <= 0:
        raise RecordError(where, field, f"image {name} has empty size {width}x{height}")
    try:
        data, width, height, _ = normalise_orientation(data, exif)
    except Exception as e:  # noqa: BLE001 -- decoding for the rotation can still fail
        raise RecordError(where, field, f"corrupt image: {name}: {type(e).__name__}: {e}") from None
    return data, int(width), int(height)


def text_value(value, where: str, field: str, allow_empty: bool = False) -> str:
    """A string field (numbers are turned into text; anything else is an error)."""
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        raise RecordError(where, field, f"expected a string, got {type(value).__name__}: {value!r}")
    text = (
        value
        if isinstance(value, str)
        else (str(int(value)) if float(value).is_integer() else str(value))
    )
    if not allow_empty and not text.strip():
        raise RecordError(where, field, "empty")
    return text


def answer_type_value(value, where: str, field: str = "answer_type") -> str:
    if value not in ANSWER_TYPES:
        raise RecordError(
            where, field, f"unknown answer type: {value!r} (valid: {', '.join(ANSWER_TYPES)})"
        )
    return value


def labels_value(labels, n_boxes: int, where: str, field: str = "box_labels") -> list[str]:
    """Box labels: one string per box (``None`` means empty labels)."""
    if labels is None:
        return [""] * n_boxes
    if isinstance(labels, str) and n_boxes == 1:
        labels = [labels]
    if not isinstance(labels, (list, tuple)):
        raise RecordError(where, field, f"expected a list of strings, got {type(labels).__name__}")
    if len(labels) != n_boxes:
        raise RecordError(where, field, f"{len(labels)} labels for {n_boxes} boxes")
    return [text_value(v, where, f"{field}[{i}]", allow_empty=True) for i, v in enumerate(labels)]


class ShardedWriter:
    """Stream encoded records into temporary Arrow shards; :meth:`dataset` concatenates them.

    Use as a context manager: the temporary shards are removed on exit either way.
    """

    def __init__(self, out: str | Path, with_segmentation: bool) -> None:
        feats = dict(BASE_FEATURES)
        if with_segmentation:
            feats["segmentation"] = SEGMENTATION_FEATURE
        self.features = datasets.Features(feats)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(out)
        self.tmp = Path(tempfile.mkdtemp(prefix=work_prefix(out, "shards"), dir=out.parent))
        self.paths: list[Path] = []
        self._writer = None
        self._in_shard = 0
        self.count = 0

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, record: dict) -> None:
        from datasets.arrow_writer import ArrowWriter

        if self._writer is None:
            path = self.tmp / f"shard-{len(self.paths):05d}.arrow"
            self.paths.append(path)
            self._writer = ArrowWriter(features=self.features, path=str(path))
        row = {k: record.get(k) for k in self.features}
        self._writer.write(self.features.encode_example(row))
        self._in_shard += 1
        self.count += 1
        if self._in_shard >= SHARD_SIZE:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.finalize()
            self._writer.close()
            self._writer, self._in_shard = None, 0

    def dataset(self) -> datasets.Dataset:
        self.close()
        parts = [datasets.Dataset.from_file(str(p)) for p in self.paths]
        return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def make_record(**kw) -> dict:
    """A schema record; boxes as plain lists of float (``[K, 4]`` float32 arrays accepted)."""
    boxes = kw.get("boxes")
    if isinstance(boxes, np.ndarray):
        kw["boxes"] = boxes.astype(np.float32).tolist()
    return kw


def skip_or_raise(err: RecordError, on_error: str, report: ErrorReport) -> None:
    """:func:`data_tools.errors.handle`, grouping skipped records by kind of error.

    The report key drops box indices and the details after the first ``": "`` of the reason
    (file names, coordinates), which go into the example instead, so that e.g. all missing
    images are counted together.
    """
    if on_error != "skip":
        handle(err, on_error, report)
        return
    kind = err.reason.split(": ", 1)[0]
    field = re.sub(r"\[\d+\]", "[]", err.field)
    handle(RecordError(f"{err.where} ({err.field}: {err.reason})", field, kind), on_error, report)


def error_report_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".errors.json")


def finish(writer: ShardedWriter, args, report: ErrorReport, meta: dict) -> int:
    """Save the dataset atomically, write/print the error report; return the exit code."""
    report_path = error_report_path(args.out)
    if args.on_error == "skip":
        report.write(report_path)
        print(report.summary(), file=sys.stderr)
        print(f"error report: {report_path}", file=sys.stderr)
    if writer.count == 0:
        print(
            f"no valid records ({report.skipped} skipped); nothing written to {args.out}",
            file=sys.stderr,
        )
        return 1
    meta = dict(meta)
    meta["convert"] = {
        **meta.get("convert", {}),
        "records": writer.count,
        "skipped": report.skipped,
    }
    save_dataset(writer.dataset(), args.out, meta=meta, fmt=args.format, overwrite=args.overwrite)
    print(f"wrote {writer.count} records to {args.out} ({args.format})", file=sys.stderr)
    return 0


def check_out(args) -> None:
    """Fail early (before any work) when ``--out`` exists without ``--overwrite``."""
    if Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")


def progress(iterable, args, total: int | None = None, desc: str = "convert"):
    from tqdm.auto import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit="rec", disable=getattr(args, "no_progress", False)
    )
