"""``visgrpo-data augment``: albumentations pipelines that keep boxes and masks consistent.

Each input record gives ``--copies K`` augmented records (ids ``<id>-aug<k>``; the originals
too with ``--include-original``). Pipelines (``--pipeline a,b`` composes in order):

* ``photometric`` -- brightness/contrast, hue/saturation, light blur: geometry unchanged;
* ``scale_crop_pad`` -- random scale (x0.7-1.3) then a random crop back to the original
  size, padding (black) where the scaled image is smaller: boxes may leave the image;
* ``safe_crop`` -- a random crop that keeps every box whole (size changes).

``--allow-flips`` adds a horizontal flip (p = 0.5). Flips are off by default because they
change the meaning of answers about left/right; only use them on data whose questions
and answers are mirror-invariant.

Boxes go through albumentations as ``pascal_voc`` boxes (``label_fields=["box_ids"]``), and
the segmentation masks (decoded from the ``segmentation`` column, see
:mod:`data_tools.segmentation`) as ``masks``; after the transform each mask is re-encoded
as compressed RLE (``""`` stays ``""``). A box whose visible fraction falls below ``--min-visibility`` is
**dropped**; one that extends past the image but is kept is **clipped** (counted by
transforming its corners as keypoints). Because a dropped evidence box can invalidate the
answer (counting, "which object"), a copy that lost a box is discarded unless
``--keep-partial``. All counts are printed and stored in ``visgrpo_meta.json`` under
``"augment"``.

Derived columns (``grid_thw``, ``evidence_mask``, ``evidence_target``, ``region_labels``) and
the processor fingerprint are **dropped**: image sizes and boxes change, so rebuild them with
``visgrpo-data masks``. Other non-schema columns are dropped too (listed in the output).
"""

from __future__ import annotations

import io
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_tools.boxes import validate_boxes
from data_tools.convert.common import ShardedWriter, check_out, skip_or_raise
from data_tools.errors import ErrorReport, RecordError
from data_tools.segmentation import decode_record, encode_mask
from visgrpo.data.images import DEFAULT_MAX_PIXELS, decode_value
from visgrpo.data.io import load_dataset_dir, save_dataset
from visgrpo.data.schema import BASE_FEATURES, DERIVED_FEATURES


def _photometric(w: int, h: int) -> list:
    import albumentations as A

    return [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=10, p=0.5),
        A.GaussianBlur(blur_limit=(3, 3), p=0.2),
    ]


def _scale_crop_pad(w: int, h: int) -> list:
    import albumentations as A

    return [
        A.RandomScale(scale_limit=(-0.3, 0.3), p=1.0),
        A.RandomCrop(
            height=h, width=w, pad_if_needed=True, pad_position="random", fill=0, fill_mask=0
        ),
    ]


def _safe_crop(w: int, h: int) -> list:
    import albumentations as A

    return [A.BBoxSafeRandomCrop(erosion_rate=0.0, p=1.0)]


# name -> factory(width, height) -> list of albumentations transforms
PIPELINES: dict[str, Callable[[int, int], list]] = {
    "photometric": _photometric,
    "scale_crop_pad": _scale_crop_pad,
    "safe_crop": _safe_crop,
}


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="input dataset directory")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument(
        "--pipeline",
        default="photometric,scale_crop_pad",
        help=f"comma-separated pipelines applied in order; valid: {', '.join(PIPELINES)}",
    )
    parser.add_argument("--copies", type=int, default=1, help="augmented copies per record")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed (copy k of record i is reproducible)"
    )
    parser.add_argument("--allow-flips", action="store_true", help="add a horizontal flip (p=0.5)")
    parser.add_argument(
        "--min-visibility",
        type=float,
        default=0.3,
        help="drop a box whose visible area fraction is below this (default 0.3)",
    )
    parser.add_argument(
        "--keep-partial", action="store_true", help="keep copies that lost a box (default: discard)"
    )
    parser.add_argument("--include-original", action="store_true", help="also write the originals")
    parser.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels (default {DEFAULT_MAX_PIXELS})")


def build_transform(names: list[str], w: int, h: int, allow_flips: bool, min_visibility: float):
    """An ``A.Compose`` over the named pipelines, with box, box-id and corner-keypoint targets."""
    import albumentations as A

    transforms = [t for name in names for t in PIPELINES[name](w, h)]
    if allow_flips:
        transforms.append(A.HorizontalFlip(p=0.5))
    with warnings.catch_warnings():  # photometric-only: "no transform to process" bboxes
        warnings.filterwarnings("ignore", message="Got processor for", category=UserWarning)
        return _compose(A, transforms, min_visibility)


def _compose(A, transforms: list, min_visibility: float):
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["box_ids"], min_visibility=min_visibility, clip=True
        ),
        keypoint_params=A.KeypointParams(
            format="xy", label_fields=["corner_ids"], remove_invisible=False
        ),
    )


def augment_record(
    rec: dict, transform, seed: int, counts: Counter, keep_partial: bool, has_seg: bool,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
):
    """One augmented copy of ``rec`` (or ``None`` if discarded); updates ``counts``."""
    img = np.asarray(decode_value(rec["image"], max_pixels))  # [H, W, 3] upright RGB8, as training sees it
    h, w = img.shape[:2]
    where = f"id={rec['id']}"
    boxes = validate_boxes(rec["boxes"], w, h, where)  # [K, 4]
    k = len(boxes)
    masks = decode_record(rec.get("segmentation") if has_seg else None, k, h, w, where)  # K x [H, W] | None
    corners = boxes[:, [0, 1, 2, 1, 0, 3, 2, 3]].reshape(-1, 2)  # [4K, 2]
    transform.set_random_seed(seed)
    out = transform(
        image=img,
        bboxes=boxes,
        box_ids=list(range(k)),
        masks=[m if m is not None else np.zeros((h, w), np.uint8) for m in masks],
        keypoints=corners,
        corner_ids=np.repeat(np.arange(k), 4),
    )
    new = out["image"]  # [H', W', 3]
    nh, nw = new.shape[:2]
    kept = [int(i) for i in out["box_ids"]]
    counts["boxes_in"] += k
    counts["boxes_dropped"] += k - len(kept)
    kps = np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)  # [4K, 2]
    for i in kept:
        c = kps[4 * i : 4 * i + 4]  # [4, 2] transformed corners of box i
        if (
            c[:, 0].min() < -0.5
            or c[:, 1].min() < -0.5
            or c[:, 0].max() > nw + 0.5
            or c[:, 1].max() > nh + 0.5
        ):
            counts["boxes_clipped"] += 1
    if len(kept) < k and not keep_partial:
        counts["copies_discarded"] += 1
        return None
    new_boxes = validate_boxes(
        np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4), nw, nh, where, clip=True
    )
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(new).save(buf, format="PNG")
    record = {
        "image": {"bytes": buf.getvalue(), "path": f"{rec['id']}.png"},
        "boxes": new_boxes.tolist(),
        "box_labels": [rec["box_labels"][i] for i in kept],
        "width": nw,
        "height": nh,
    }
    if has_seg:
        record["segmentation"] = [encode_mask(out["masks"][i]) if masks[i] is not None else "" for i in kept]
    counts["boxes_out"] += len(kept)
    counts["copies_written"] += 1
    return record


COUNT_KEYS = (
    "boxes_in",
    "boxes_out",
    "boxes_clipped",
    "boxes_dropped",
    "copies_written",
    "copies_discarded",
)


def _seed(seed: int, index: int, copy: int) -> int:
    return (seed * 1_000_003 + index * 10_007 + copy * 101 + 17) % (2**31 - 1)


def run(args) -> int:
    from tqdm.auto import tqdm

    check_out(args)
    names = [n.strip() for n in args.pipeline.split(",") if n.strip()]
    unknown = [n for n in names if n not in PIPELINES]
    if unknown or not names:
        raise ValueError(f"unknown pipeline(s) {unknown}; valid: {', '.join(PIPELINES)}")
    if args.copies < 1:
        raise ValueError("--copies must be >= 1")
    if args.allow_flips:
        warnings.warn(
            "--allow-flips: horizontal flips change left/right answers; use only on mirror-invariant questions",
            stacklevel=1,
        )
    ds, meta = load_dataset_dir(args.dataset)
    if "images" in ds.column_names:
        raise ValueError(f"{args.dataset}: multi-image datasets are not supported by augment")
    has_seg = "segmentation" in ds.column_names
    keep_cols = [c for c in ds.column_names if c in BASE_FEATURES or c == "segmentation"]
    dropped_cols = [c for c in ds.column_names if c not in keep_cols]
    derived = [c for c in dropped_cols if c in DERIVED_FEATURES]
    ds = ds.select_columns(keep_cols)
    counts: Counter = Counter(dict.fromkeys(COUNT_KEYS, 0))
    report = ErrorReport()
    transforms: dict = {}
    with ShardedWriter(args.out, with_segmentation=has_seg) as writer:
        for i, rec in enumerate(tqdm(ds, desc="augment", unit="rec", disable=args.no_progress)):
            report.processed += 1
            try:
                if args.include_original:
                    writer.add(dict(rec, image=rec["image"]))
                size = (rec["image"].width, rec["image"].height)
                if size not in transforms:
                    transforms[size] = build_transform(
                        names, *size, args.allow_flips, args.min_visibility
                    )
                for k in range(args.copies):
                    new = augment_record(
                        rec,
                        transforms[size],
                        _seed(args.seed, i, k),
                        counts,
                        args.keep_partial,
                        has_seg,
                        args.max_image_pixels,
                    )
                    if new is not None:
                        writer.add({**rec, **new, "id": f"{rec['id']}-aug{k}"})
            except RecordError as err:
                skip_or_raise(err, args.on_error, report)
        summary = {"pipeline": names, "copies": args.copies, "seed": args.seed, "allow_flips": args.allow_flips,
                   "min_visibility": args.min_visibility, **{k: int(v) for k, v in sorted(counts.items())},
                   "records_skipped": report.skipped}  # fmt: skip
        print("augment: " + ", ".join(f"{k}={v}" for k, v in summary.items()), file=sys.stderr)
        if dropped_cols:
            print(f"augment: dropped columns {dropped_cols}", file=sys.stderr)
        if derived:
            print("augment: evidence masks are stale after augmentation; rebuild them with "
                  "`visgrpo-data masks`", file=sys.stderr)  # fmt: skip
        if report.skipped:
            print(report.summary(), file=sys.stderr)
        if writer.count == 0:
            print("augment: no records written", file=sys.stderr)
            return 1
        new_meta = {k: v for k, v in meta.items() if k != "processor"}
        new_meta["augment"] = {**summary, "source": str(Path(args.dataset))}
        save_dataset(
            writer.dataset(), args.out, meta=new_meta, fmt=args.format, overwrite=args.overwrite
        )
    print(f"wrote {writer.count} records to {args.out}", file=sys.stderr)
    return 0
