"""``visgrpo-data validate DIR``: check an evidence dataset; write a JSON report.

Checks every record: schema (required columns and types, ``answer_type`` in
:data:`~visgrpo.data.schema.ANSWER_TYPES`, one label / segmentation / ``box_image`` per box
(each segmentation decodes at its image's size, :mod:`data_tools.segmentation`),
unique ids); images decode and have the ``width``/``height`` of their columns; boxes are
valid (:func:`data_tools.boxes.validate_boxes`: finite, not inverted, non-zero area, inside
the image up to 1 px); and, when derived columns are present, their consistency with the
processor fingerprint in ``visgrpo_meta.json``: ``grid_thw`` equals the processor's grid
for each image, ``evidence_mask`` / ``evidence_target`` / ``region_labels`` have one entry
per merged token of all images, the mask lies in [0, 1], the target is non-negative and sums
to 1, the labels lie in [0, number of boxes]. The exit code is 1 when any record fails.
A directory of splits (``train/``, ``validation/``) is validated split by split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_tools.errors import ErrorReport, RecordError
from data_tools.segmentation import decode_segmentation
from visgrpo.data.fields import EVIDENCE_FIELDS
from visgrpo.data.images import DEFAULT_MAX_PIXELS, decode_value
from visgrpo.data.io import load_dataset_dir, split_dirs
from visgrpo.data.schema import ANSWER_TYPES, DERIVED_FEATURES, FINGERPRINT_KEYS
from visgrpo.models.families import FAMILIES

REQUIRED = ("id", "question", "answer", "answer_type", "boxes", "width", "height")
SUM_TOL = 1e-4


def _grid_from_fingerprint(fp: dict):
    from data_tools.grid import load_processor_grid

    missing = [k for k in FINGERPRINT_KEYS if k not in fp]
    if missing:
        raise ValueError(f"processor fingerprint lacks {missing}")
    grid = load_processor_grid(fp["family"], fp["min_pixels"], fp["max_pixels"])
    fam = FAMILIES[fp["family"]]
    if (fp["patch_size"], fp["merge_size"]) != (fam.patch_size, fam.merge_size):
        raise ValueError(f"fingerprint patch/merge {fp['patch_size']}/{fp['merge_size']} "
                         f"differ from family {fp['family']}'s {fam.patch_size}/{fam.merge_size}")
    return grid


def _image_size(img, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Decode one image (``{"bytes", "path"}`` or PIL) the way training does (upright, RGB8,
    pixel limit); return ``(height, width)``.
    """
    im = decode_value(img, max_pixels)
    return im.height, im.width


def check_record(
    row: dict, where: str, grid=None, check_images: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> None:
    """Raise :class:`RecordError` for the first problem of ``row``."""
    from data_tools.boxes import validate_boxes

    if row.get("answer_type") not in ANSWER_TYPES:
        raise RecordError(where, "answer_type", f"{row.get('answer_type')!r} not in {ANSWER_TYPES}")
    for col in ("question", "answer"):
        if not isinstance(row.get(col), str):
            raise RecordError(where, col, "missing or not a string")
    multi = isinstance(row.get("width"), (list, tuple))
    hs = list(row["height"]) if multi else [row["height"]]
    ws = list(row["width"]) if multi else [row["width"]]
    images = row.get("images") if "images" in row else [row.get("image")]
    if len(hs) != len(ws) or len(images or []) != len(hs):
        raise RecordError(where, "width/height", f"{len(images or [])} images but {len(ws)} widths, {len(hs)} heights")
    boxes = row.get("boxes") or []
    n = len(boxes)
    if isinstance(row.get("segmentation"), str):
        raise RecordError(where, "segmentation",
                          "one string; expected one JSON text per box (data_tools/segmentation.py)")
    for col in ("box_labels", "segmentation", "box_image"):
        if row.get(col) is not None and len(row[col]) != n and (col != "box_labels" or row[col]):
            raise RecordError(where, col, f"{len(row[col])} entries for {n} boxes")
    box_img = list(row.get("box_image") or [0] * n)
    for j, (im, h, w) in enumerate(zip(images, hs, ws, strict=True)):
        f = f"images[{j}]" if multi else "image"
        if check_images:
            try:
                size = _image_size(im, max_pixels)
            except Exception as e:  # noqa: BLE001 -- any decoder failure is a bad record
                raise RecordError(where, f, f"cannot decode image: {e}") from None
            if size != (h, w):
                raise RecordError(where, f, f"decoded size {size[1]}x{size[0]} != width x height {w}x{h}")
        sel = [k for k in range(n) if box_img[k] == j]
        if sel:
            try:
                validate_boxes([boxes[k] for k in sel], w, h, where)
            except RecordError as e:
                k = sel[int(e.field.split("[")[1].rstrip("]"))] if "[" in e.field else sel[0]
                raise RecordError(where, f"boxes[{k}]", e.reason) from None
    if any(b < 0 or b >= len(hs) for b in box_img):
        raise RecordError(where, "box_image", f"index out of range of {len(hs)} images")
    for k, seg in enumerate(row.get("segmentation") or []):
        if seg:  # decodes, at the size of its box's image
            decode_segmentation(seg, hs[box_img[k]], ws[box_img[k]], where, f"segmentation[{k}]")
    if grid is not None:
        _check_derived(row, where, grid, hs, ws, n)


def _check_derived(row, where, grid, hs, ws, n_boxes) -> None:
    want = grid.grid_thw_many(hs, ws).tolist()
    got = [list(map(int, g)) for g in (row.get("grid_thw") or [])]
    if got != want:
        raise RecordError(where, "grid_thw", f"{got} != processor grid {want}")
    tokens = sum(t * h * w for t, h, w in want) // grid.merge_size**2
    for col in EVIDENCE_FIELDS:
        if row.get(col) is None or len(row[col]) != tokens:
            raise RecordError(where, col, f"{len(row.get(col) or [])} entries, expected {tokens} tokens")
    m = np.asarray(row["evidence_mask"], np.float64)
    if not (np.isfinite(m).all() and m.min() >= -1e-6 and m.max() <= 1 + 1e-6):
        raise RecordError(where, "evidence_mask", "values outside [0, 1]")
    q = np.asarray(row["evidence_target"], np.float64)
    if not (np.isfinite(q).all() and q.min() >= 0 and abs(q.sum() - 1) <= SUM_TOL):
        raise RecordError(where, "evidence_target", f"not a distribution (sum {q.sum():.6g}, min {q.min():.3g})")
    lab = np.asarray(row["region_labels"])
    if lab.min() < 0 or lab.max() > n_boxes:
        raise RecordError(where, "region_labels", f"labels outside [0, {n_boxes}]")


def validate_dir(
    path: Path, check_images: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> dict:
    """Validate one dataset directory; returns the report dict."""
    report = ErrorReport(max_examples=10)
    ds, meta = load_dataset_dir(path)
    header: list[str] = []
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if "image" not in ds.column_names and "images" not in ds.column_names:
        missing.append("image|images")
    derived = [c for c in DERIVED_FEATURES if c in ds.column_names]
    grid = None
    if derived:
        try:
            if len(derived) < len(DERIVED_FEATURES):
                raise ValueError(f"only some derived columns present: {derived}")
            grid = _grid_from_fingerprint(meta.get("processor") or {})
        except (ValueError, KeyError) as e:
            header.append(f"derived columns: {e}")
    if missing:
        header.append(f"missing columns: {missing}")
    if not missing:
        from datasets import Image, Sequence

        if "image" in ds.column_names:  # decode ourselves: a corrupt image is a record error
            ds = ds.cast_column("image", Image(decode=False))
        if "images" in ds.column_names:
            ds = ds.cast_column("images", Sequence(Image(decode=False)))
        seen: set = set()
        for row in ds:
            where = f"{path.name}:id={row['id']}"
            report.processed += 1
            try:
                if row["id"] in seen:
                    raise RecordError(where, "id", "duplicate id")
                seen.add(row["id"])
                check_record(row, where, grid, check_images, max_pixels)
            except RecordError as e:
                report.add(e)
    out = {"dataset": str(path), "rows": len(ds), "dataset_errors": header, **report.to_dict()}
    out["ok"] = not header and report.skipped == 0
    return out


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="dataset directory (or a directory of splits)")
    parser.add_argument("--report", default=None, help="JSON report path (default: DIR.validate.json)")
    parser.add_argument("--no-images", action="store_true", help="skip decoding images")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels (default {DEFAULT_MAX_PIXELS})")


def run(args) -> int:
    path = Path(args.dataset)
    splits = split_dirs(path)
    reports = [validate_dir(path / s if s else path, not args.no_images, args.max_image_pixels)
               for s in (splits or [""])]
    doc = {"ok": all(r["ok"] for r in reports), "splits": reports}
    dest = Path(args.report) if args.report else path.with_name(path.name + ".validate.json")
    dest.write_text(json.dumps(doc, indent=2))
    for r in reports:
        status = "ok" if r["ok"] else f"{r['skipped']} bad records"
        print(f"{r['dataset']}: {r['rows']} rows, {status}")
        for h in r["dataset_errors"]:
            print(f"  dataset: {h}")
        for item in r["reasons"][:20]:
            print(f"  {item['count']:6d}  {item['reason']}  (e.g. {', '.join(item['examples'][:3])})")
    print(f"report: {dest}")
    return 0 if doc["ok"] else 1
