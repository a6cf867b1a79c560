"""The optional ``segmentation`` column: one COCO segmentation per box, as JSON text.

Format (every writer -- ``synth``, ``convert coco|refcoco|jsonl``, ``augment`` -- and every
reader -- ``masks``, ``augment``, ``validate`` -- uses this module): ``segmentation`` is a
list of strings aligned with ``boxes`` (entry ``k`` belongs to ``boxes[k]``). Each entry is

* a COCO polygon list ``[[x0, y0, x1, y1, ...], ...]`` in original-image pixels,
* a COCO RLE ``{"size": [H, W], "counts": str | list[int]}`` (compressed counts as a UTF-8
  string, uncompressed as a list of ints),

serialised with :func:`json.dumps`, or ``""`` when box ``k`` has no segmentation. A null
list (a record of a dataset whose other records have masks) reads as all ``""``. The
column is absent when no record has segmentation. Decoding uses pycocotools
(``frPyObjects`` for polygons and uncompressed RLE).
"""

from __future__ import annotations

import json

import datasets
import numpy as np

from data_tools.errors import RecordError

FEATURE = datasets.Sequence(datasets.Value("string"))


def segmentation_column(
    segs, n_boxes: int, where: str, field: str = "segmentation", hw: tuple[int, int] | None = None
) -> list[str]:
    """Check per-box COCO segmentation objects and serialise them (one JSON text per box).

    Args:
        segs: ``None`` (no box has one) or a list of ``n_boxes`` objects (``None`` per gap).
        n_boxes: number of boxes of the record.
        where, field: record and field named in errors (``field[i]`` for box ``i``).
        hw: the image's ``(height, width)``: an RLE must have this size.

    Returns:
        ``n_boxes`` strings, ``""`` for a box without segmentation.

    Raises:
        RecordError: wrong length, or an entry that is neither polygons nor an RLE.
    """
    if segs is None:
        return [""] * n_boxes
    if not isinstance(segs, (list, tuple)) or len(segs) != n_boxes:
        raise RecordError(where, field, f"expected a list with one segmentation per box ({n_boxes})")
    out = []
    for i, s in enumerate(segs):
        obj = _checked(s, where, f"{field}[{i}]", hw)
        out.append("" if obj is None else json.dumps(obj, separators=(",", ":")))
    return out


def _checked(s, where: str, field: str, hw: tuple[int, int] | None = None):
    """One segmentation object, normalised (RLE counts as str), or ``None``.

    An empty polygon list and an RLE whose counts do not decode to exactly ``h * w``
    non-negative runs are errors (they would fail later, in ``masks``).
    """
    if s is None or s == "":
        return None
    if isinstance(s, dict):
        if "counts" not in s or "size" not in s:
            raise RecordError(where, field, "RLE needs 'size' and 'counts'")
        counts = s["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("utf-8")
        size = s["size"]
        if not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise RecordError(where, field, f"RLE size must be [h, w] positive ints, got {size!r}")
        if hw is not None and list(size) != list(hw):
            raise RecordError(where, field, f"RLE size {list(size)} != image {hw[0]}x{hw[1]}")
        try:
            runs = _rle_runs(counts)
        except ValueError as e:
            raise RecordError(where, field, f"bad RLE counts: {e}") from None
        if min(runs, default=0) < 0 or sum(runs) != size[0] * size[1]:
            raise RecordError(
                where,
                field,
                f"bad RLE counts: {len(runs)} runs covering {sum(runs)} pixels, expected "
                f"{size[0] * size[1]} ({size[0]}x{size[1]})",
            )
        return {"size": [int(size[0]), int(size[1])], "counts": counts}
    if isinstance(s, (list, tuple)):
        if not s:
            raise RecordError(where, field, "empty polygon list (use null for a box without one)")
        polys = []
        for j, poly in enumerate(s):
            arr = np.asarray(poly, dtype=np.float64) if isinstance(poly, (list, tuple)) else None
            if arr is None or arr.ndim != 1 or arr.size < 6 or arr.size % 2 or not np.isfinite(arr).all():
                raise RecordError(where, f"{field}[{j}]", "polygon must be a flat list of >= 3 finite x, y pairs")
            polys.append([float(v) for v in arr])
        return polys
    raise RecordError(where, field, f"expected polygons (list) or RLE (dict), got {type(s).__name__}")


def _rle_runs(counts) -> list[int]:
    """Run lengths of an RLE's ``counts``: a list of ints, or COCO's compressed string
    (pycocotools ``rleFrString``: 5-bit groups offset by 48, continuation bit 0x20, sign bit
    0x10, runs after the second stored as the difference to the run two before).
    Well-formed strings take a tight loop over their bytes; anything else the checked loop
    of :func:`_rle_runs_checked`, which names the fault.
    """
    if isinstance(counts, str) and counts.isascii():
        runs: list[int] = []
        append, x, shift, n = runs.append, 0, 0, 0
        for c in counts.encode("ascii"):
            c -= 48
            if c < 0 or c > 63:
                break
            x |= (c & 0x1F) << shift
            shift += 5
            if c & 0x20:
                continue
            if c & 0x10:
                x |= -1 << shift
            if n > 2:
                x += runs[-2]
            append(x)
            n, x, shift = n + 1, 0, 0
        else:
            if not shift:
                return runs
    return _rle_runs_checked(counts)


def _rle_runs_checked(counts) -> list[int]:
    """Run lengths of an RLE's ``counts``: a list of ints, or COCO's compressed string
    (pycocotools ``rleFrString``: 5-bit groups offset by 48, continuation bit 0x20, sign bit
    0x10, runs after the second stored as the difference to the run two before).
    """
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise ValueError("uncompressed counts must be a list of ints")
        return list(counts)
    if not isinstance(counts, str):
        raise ValueError(f"expected a string or a list of ints, got {type(counts).__name__}")
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("truncated compressed counts")
            c = ord(counts[p]) - 48
            if not 0 <= c <= 63:
                raise ValueError(f"invalid character {counts[p]!r} at position {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _segmentation_rle(seg, height: int, width: int) -> tuple[dict, list[int] | None]:
    """One entry -> (pycocotools RLE with compressed ``bytes`` counts, its validated run
    lengths or ``None`` for polygons, whose RLE pycocotools builds itself).
    """
    from pycocotools import mask as mask_utils

    obj = json.loads(seg) if isinstance(seg, str) else seg
    if isinstance(obj, dict):
        if list(obj.get("size", [])) != [height, width]:
            raise ValueError(f"RLE size {obj.get('size')} != image {height}x{width}")
        runs = _rle_runs(obj.get("counts"))
        if min(runs, default=0) < 0 or sum(runs) != height * width:
            raise ValueError(f"RLE counts cover {sum(runs)} pixels, not {height * width}")
        rle = obj if isinstance(obj["counts"], str) else mask_utils.frPyObjects(obj, height, width)
        if isinstance(rle.get("counts"), str):
            rle = {"size": rle["size"], "counts": rle["counts"].encode()}
        return rle, runs
    if isinstance(obj, list) and obj:
        return mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in obj], height, width)), None
    raise ValueError(f"expected an RLE dict or a polygon list, got {type(obj).__name__}")


def decode_segmentation(seg, height: int, width: int, where: str, field: str) -> np.ndarray:
    """One entry (JSON text, or the parsed RLE dict / polygon list) -> ``[H, W]`` uint8 mask.

    Raises:
        RecordError: unparsable text, an RLE of another size, or a malformed object.
    """
    from pycocotools import mask as mask_utils

    try:
        return mask_utils.decode(_segmentation_rle(seg, height, width)[0])
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
        raise RecordError(where, field, f"bad segmentation: {e}") from None


def decode_segmentations(segs, height: int, width: int, where: str, fields: list[str]) -> np.ndarray:
    """Entries of one image -> their masks in COCO's column-major layout, ``[K, W, H]`` uint8
    (``[k].T`` is :func:`decode_segmentation` of entry k), decoded by one pycocotools call.

    Raises:
        RecordError: as :func:`decode_segmentation`, naming the entry's field.
    """
    from pycocotools import mask as mask_utils

    rles = []
    for seg, field in zip(segs, fields, strict=True):
        try:
            rles.append(_segmentation_rle(seg, height, width)[0])
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
            raise RecordError(where, field, f"bad segmentation: {e}") from None
    return mask_utils.decode(rles).transpose(2, 1, 0)  # [H, W, K] Fortran -> [K, W, H] C order


def decode_record(segs, n_boxes: int, height: int, width: int, where: str,
                  field: str = "segmentation") -> list[np.ndarray | None]:
    """The column value of one record -> ``n_boxes`` masks ``[H, W]`` uint8 (``None`` per ``""``).

    Raises:
        RecordError: not a list of one string per box (e.g. the retired one-JSON-string-per-
            record format), or an entry :func:`decode_segmentation` rejects.
    """
    if segs is None:
        return [None] * n_boxes
    if isinstance(segs, str) or len(segs) != n_boxes:
        got = "one string" if isinstance(segs, str) else f"{len(segs)} entries"
        raise RecordError(where, field, f"expected a list of one JSON text per box ({n_boxes}), got {got}")
    return [decode_segmentation(s, height, width, where, f"{field}[{k}]") if s else None
            for k, s in enumerate(segs)]


def encode_mask(mask: np.ndarray) -> str:
    """``[H, W]`` binary mask -> compressed COCO RLE as JSON text (a column entry)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return json.dumps({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("utf-8")},
                      separators=(",", ":"))
