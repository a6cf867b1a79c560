"""Box formats and box validation shared by every data-tools command.

A box format has two parts:

* a **layout** -- ``xyxy`` (x0, y0, x1, y1), ``xywh`` (x0, y0, width, height; COCO) or
  ``cxcywh`` (centre x, centre y, width, height);
* a **scale** -- ``pixel`` (absolute pixels of the original image), ``unit`` (normalised to
  [0, 1] by the image width/height) or ``thousand`` (normalised to [0, 1000], the Qwen2-VL
  convention).

On the command line it is ``--box-format LAYOUT [--box-scale SCALE]`` or one composite name
``LAYOUT-SCALE`` (e.g. ``cxcywh-unit``, ``xyxy-thousand``); a bare layout means ``pixel``.
Giving a composite name together with a different ``--box-scale`` is an error.

The schema stores boxes as ``xyxy`` float pixels of the original image
(docs/architecture.md, "Evidence dataset"). :func:`to_xyxy_pixels` converts any format to that (vectorised over
the boxes of a record), and :func:`validate_boxes` checks the result: finite, not inverted
(``x1 < x0`` or ``y1 < y0``), non-zero area, inside the image up to ``tol`` pixels. Boxes
that overshoot the image by at most ``tol`` are clipped silently (rounding of normalised
coordinates); larger overshoots are an error unless ``clip=True`` (``--clip-boxes``), which
clips them to the image (a box entirely outside the image still fails: zero area after
clipping). Every failure is a :class:`data_tools.errors.RecordError` naming the record and
the box (``boxes[2]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_tools.errors import RecordError

LAYOUTS = ("xyxy", "xywh", "cxcywh")
SCALES = ("pixel", "unit", "thousand")
BOX_FORMATS = tuple(f"{lay}-{sc}" for lay in LAYOUTS for sc in SCALES) + LAYOUTS
DEFAULT_TOL = 1.0  # pixels of overshoot clipped silently


@dataclass(frozen=True)
class BoxFormat:
    """A parsed box format: ``layout`` in :data:`LAYOUTS`, ``scale`` in :data:`SCALES`."""

    layout: str = "xyxy"
    scale: str = "pixel"

    @property
    def name(self) -> str:
        return f"{self.layout}-{self.scale}"


class BoxFormatError(RecordError):
    """An unknown box layout or scale (a :class:`RecordError`, so it names where it came from)."""


def parse_box_format(
    fmt: str | BoxFormat,
    scale: str | None = None,
    where: str = "arguments",
    field: str = "box_format",
) -> BoxFormat:
    """Parse ``LAYOUT``, ``LAYOUT-SCALE`` (``_`` or ``:`` also accepted) plus an optional scale.

    Args:
        fmt: layout or composite name, or an already parsed :class:`BoxFormat`.
        scale: separate scale (``--box-scale``); ``None`` means "from ``fmt``, else pixel".
        where: for the error message (``"arguments"``, a file:line or a record id).
        field: for the error message.

    Raises:
        BoxFormatError: unknown layout/scale, or conflicting scales.
    """
    if isinstance(fmt, BoxFormat):
        layout, fmt_scale = fmt.layout, fmt.scale
    else:
        if not isinstance(fmt, str):
            raise BoxFormatError(where, field, f"box format must be a string, got {fmt!r}")
        parts = fmt.strip().lower().replace("_", "-").replace(":", "-").split("-")
        if len(parts) > 2 or parts[0] not in LAYOUTS:
            raise BoxFormatError(
                where, field, f"unknown box format {fmt!r}; valid: {', '.join(BOX_FORMATS)}"
            )
        layout = parts[0]
        fmt_scale = parts[1] if len(parts) == 2 else None
        if fmt_scale is not None and fmt_scale not in SCALES:
            raise BoxFormatError(
                where,
                field,
                f"unknown box scale {fmt_scale!r} in {fmt!r}; valid: {', '.join(SCALES)}",
            )
    if scale is not None and scale not in SCALES:
        raise BoxFormatError(
            where, "box_scale", f"unknown box scale {scale!r}; valid: {', '.join(SCALES)}"
        )
    if scale is not None and fmt_scale is not None and scale != fmt_scale:
        raise BoxFormatError(
            where,
            "box_scale",
            f"box format {fmt!r} says scale {fmt_scale!r} but box scale is {scale!r}",
        )
    return BoxFormat(layout, scale or fmt_scale or "pixel")


def as_box_array(boxes, where: str, field: str = "boxes") -> np.ndarray:
    """Turn a record's boxes into a ``[K, 4]`` float64 array.

    Accepts a list of 4-number boxes, an array of shape ``[K, 4]``, ``None``/``[]`` (no
    boxes), or a single flat box of 4 numbers.

    Raises:
        RecordError: ragged, non-numeric or wrongly shaped input (naming the first bad box).
    """
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float64)
    if isinstance(boxes, np.ndarray):
        arr = boxes
    else:
        if not isinstance(boxes, (list, tuple)):
            raise RecordError(
                where, field, f"expected a list of [4 numbers] boxes, got {type(boxes).__name__}"
            )
        if len(boxes) == 4 and all(_is_number(v) for v in boxes):
            boxes = [boxes]
        for i, b in enumerate(boxes):
            if not isinstance(b, (list, tuple, np.ndarray)) or len(b) != 4:
                raise RecordError(where, f"{field}[{i}]", f"expected 4 numbers, got {b!r}")
            if not all(_is_number(v) for v in b):
                raise RecordError(where, f"{field}[{i}]", f"non-numeric coordinate in {b!r}")
        arr = np.asarray(boxes, dtype=np.float64) if boxes else np.zeros((0, 4))
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise RecordError(where, field, f"expected shape [K, 4], got {list(arr.shape)}")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise RecordError(where, field, f"non-numeric coordinates ({e})") from None


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def to_xyxy_pixels(
    boxes,
    fmt: str | BoxFormat,
    width: float,
    height: float,
    where: str,
    field: str = "boxes",
) -> np.ndarray:
    """Convert boxes in format ``fmt`` to xyxy float pixels of a ``width`` x ``height`` image.

    Conversion only (no validation; see :func:`validate_boxes`). Vectorised over boxes.

    Args:
        boxes: see :func:`as_box_array`.
        fmt: box format (:func:`parse_box_format`).
        width, height: original image size in pixels.
        where: record location for errors.
        field: column name for errors.

    Returns:
        ``[K, 4]`` float64 array ``x0, y0, x1, y1`` in pixels.
    """
    f = parse_box_format(fmt, where=where)
    a = as_box_array(boxes, where, field)  # [K, 4]
    if f.layout == "xyxy":
        out = a.copy()
    elif f.layout == "xywh":
        out = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)  # [K, 4]
    else:  # cxcywh
        half = a[:, 2:] / 2.0  # [K, 2]
        out = np.concatenate([a[:, :2] - half, a[:, :2] + half], axis=1)  # [K, 4]
    if f.scale != "pixel":
        norm = 1.0 if f.scale == "unit" else 1000.0
        out *= np.array([width, height, width, height], dtype=np.float64) / norm  # [K, 4]
    return out


def validate_boxes(
    boxes,
    width: float,
    height: float,
    where: str,
    clip: bool = False,
    tol: float = DEFAULT_TOL,
    field: str = "boxes",
) -> np.ndarray:
    """Check xyxy pixel boxes against a ``width`` x ``height`` image; return them clipped.

    Checks, in this order, reporting the first offending box: finite coordinates; not
    inverted (``x1 < x0`` or ``y1 < y0``); non-zero area (``x1 == x0`` or ``y1 == y0``);
    inside ``[0, width] x [0, height]`` up to ``tol`` pixels. Overshoots up to ``tol`` are
    always clipped; larger ones are an error, or clipped when ``clip`` is true -- in which
    case a box that has no area left inside the image is still an error.

    Args:
        boxes: ``[K, 4]`` xyxy pixels (anything :func:`as_box_array` accepts).
        width, height: image size in pixels (positive).
        where: record location for errors (``"file.jsonl:3"``, ``"id=coco_42"``).
        clip: clip out-of-bounds boxes instead of failing (``--clip-boxes``).
        tol: overshoot in pixels tolerated (and clipped) without ``clip``.
        field: column name for errors (``boxes[i]`` is reported).

    Returns:
        ``[K, 4]`` float32 array inside the image.

    Raises:
        RecordError: naming ``where`` and ``field[i]``.
    """
    a = as_box_array(boxes, where, field)  # [K, 4]
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise RecordError(
            where, "width/height", f"image size must be positive, got {width}x{height}"
        )
    if a.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.float32)

    def fail(mask: np.ndarray, reason: str) -> None:
        i = int(np.flatnonzero(mask)[0])
        box = ", ".join(f"{v:g}" for v in a[i])
        raise RecordError(where, f"{field}[{i}]", f"{reason}: [{box}]")

    bad = ~np.isfinite(a).all(axis=1)  # [K]
    if bad.any():
        fail(bad, "non-finite coordinate (NaN or inf)")
    bad = (a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1])  # [K]
    if bad.any():
        fail(bad, "inverted box (x1 < x0 or y1 < y0)")
    bad = (a[:, 2] == a[:, 0]) | (a[:, 3] == a[:, 1])  # [K]
    if bad.any():
        fail(bad, "zero-area box")
    limits = np.array([width, height, width, height], dtype=np.float64)
    over = np.maximum(-a[:, :2], 0).max(axis=1)  # [K] overshoot left/top
    over = np.maximum(over, np.maximum(a - limits, 0).max(axis=1))  # [K] incl. right/bottom
    bad = over > tol  # [K]
    if bad.any() and not clip:
        fail(
            bad,
            f"out of bounds of the {width:g}x{height:g} image by more than {tol:g} px "
            "(pass --clip-boxes to clip)",
        )
    out = np.clip(a, 0.0, limits)  # [K, 4]
    gone = (out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1])  # [K]
    if gone.any():
        fail(gone, f"no area inside the {width:g}x{height:g} image")
    return out.astype(np.float32)


def count_clipped(boxes, width: float, height: float) -> int:
    """Number of boxes (xyxy pixels) that :func:`validate_boxes` would clip."""
    a = as_box_array(boxes, "count_clipped")  # [K, 4]
    limits = np.array([width, height, width, height], dtype=np.float64)
    return int(((a < 0) | (a > limits)).any(axis=1).sum())


def convert_and_validate(
    boxes,
    fmt: str | BoxFormat,
    width: float,
    height: float,
    where: str,
    clip: bool = False,
    tol: float = DEFAULT_TOL,
    field: str = "boxes",
) -> np.ndarray:
    """:func:`to_xyxy_pixels` then :func:`validate_boxes`; ``[K, 4]`` float32 pixels."""
    return validate_boxes(
        to_xyxy_pixels(boxes, fmt, width, height, where, field),
        width,
        height,
        where,
        clip,
        tol,
        field,
    )


def add_box_arguments(parser) -> None:
    """Add ``--box-format``, ``--box-scale`` and :func:`add_clip_arguments`."""
    parser.add_argument(
        "--box-format",
        default="xyxy",
        metavar="FMT",
        help="box layout xyxy | xywh | cxcywh, optionally with a scale suffix "
        f"(-pixel | -unit | -thousand), e.g. cxcywh-unit (default xyxy = xyxy-pixel); valid: {', '.join(BOX_FORMATS)}",
    )
    parser.add_argument(
        "--box-scale",
        choices=SCALES,
        default=None,
        help="coordinate scale: pixel (absolute), unit (0-1 normalised), thousand (0-1000); "
        "default: from --box-format, else pixel",
    )
    add_clip_arguments(parser)


def add_clip_arguments(parser) -> None:
    """Add ``--clip-boxes`` and ``--box-tolerance`` (every converter; see :func:`validate_boxes`)."""
    parser.add_argument(
        "--clip-boxes",
        action="store_true",
        help="clip boxes that leave the image instead of treating them as errors",
    )
    parser.add_argument(
        "--box-tolerance",
        type=float,
        default=DEFAULT_TOL,
        metavar="PX",
        help=f"overshoot (pixels) clipped silently without --clip-boxes (default {DEFAULT_TOL:g})",
    )


def format_box_text(box, ndigits: int = 1) -> str:
    """A box as answer text ``"[x0, y0, x1, y1]"`` (rounded to ``ndigits``; ``.0`` dropped)."""
    vals = []
    for v in np.asarray(box, dtype=np.float64).reshape(4):
        r = round(float(v), ndigits)
        vals.append(str(int(r)) if r == int(r) else f"{r:.{ndigits}f}")
    return "[" + ", ".join(vals) + "]"
