"""``visgrpo-data masks``: evidence boxes -> per-visual-token evidence for one processor.

For each image (``H x W``) the processor's ``smart_resize`` gives ``(H', W')`` and a grid of
``th x tw`` merged tokens of ``patch*merge`` px (data_tools/grid.py; docs/methods.md, Evidence-to-token mapping).
A box is scaled by ``W'/W, H'/H``; in token units a coordinate is ``x * tw / W``.

* ``evidence_mask[k]``: exact fraction of token cell k covered by the UNION of the boxes
  (coordinate compression of the box edges and cell edges: no double counting), or, for an
  image whose boxes all carry a ``segmentation``, the area average over the cell of the
  union of their pixel masks (each pixel a unit square; separable pixel/cell overlap
  weights, so no resampling).
* ``region_labels[k]``: 1-based index (in the sample's ``boxes``) of the box (or its mask)
  covering most of cell k; ties go to the lower index; 0 where nothing covers it.
* ``evidence_target``: EASE's target (arXiv 2605.30912, docs/methods.md, EASE)
  ``q = (1 - alpha) * normalise(sum_boxes g_b) + alpha * uniform`` over all tokens of the
  sample's images, with ``g_b`` a peak-1 Gaussian centred on box b, sigma =
  ``sigma_scale`` x box side per axis in token units. ``g_b`` is averaged over each cell
  (difference of normal CDFs), so even a box thinner than a token puts its mass in the
  cell of its centre. A sample without boxes gets the uniform target. For a single-image
  sample this is exactly :func:`visgrpo.data.evidence.smoothed_evidence_target` (same code:
  :func:`visgrpo.data.evidence.gaussian_cell_bumps`); a multi-image sample normalises over all
  its images' tokens together.

``segmentation`` column (optional): one COCO segmentation per box as JSON text, ``""`` for
none (format: :mod:`data_tools.segmentation`, shared by every writer).

Multi-image samples (visgrpo/data/schema.py): ``images``, list-valued ``width``/``height``
and ``box_image``; outputs run over all images' tokens in order. Sizes come from the
``width``/``height`` columns: no image is decoded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from data_tools.boxes import DEFAULT_TOL, validate_boxes
from data_tools.errors import ErrorReport, RecordError, handle
from data_tools.grid import (  # noqa: F401 -- geometry re-exported for callers of masks
    ProcessorGrid,
    add_processor_arguments,
    block_coverage,
    box_cell_coverage,
    grid_from_args,
    pixel_cell_overlap,
    pixel_cell_weights,
    segmentation_coverage,
    union_cell_coverage,
)
from data_tools.segmentation import decode_segmentations
from visgrpo.data.evidence import gaussian_cell_bumps
from visgrpo.data.fields import EVIDENCE_FIELDS
from visgrpo.data.geometry import Geometry
from visgrpo.data.io import META_FILE, atomic_output_dir, load_dataset_dir, save_dataset, split_dirs
from visgrpo.data.schema import DERIVED_FEATURES

BOX_TOL = DEFAULT_TOL  # px of overshoot clipped silently, as every converter


def _put_coverage(union, region, labels, tok_start, kstart, u: int, uni: np.ndarray, per: np.ndarray) -> None:
    """Write unit ``u``'s mask coverage (union [th, tw], per object [K, th, tw]) and the label of
    the object covering most of each cell (ties: lower index; 0 where none) into the flat outputs.
    """
    lab = np.where(per.max(0) > 0, labels[kstart[u]:kstart[u + 1]][per.argmax(0)], 0)
    union[tok_start[u]:tok_start[u + 1]], region[tok_start[u]:tok_start[u + 1]] = uni.ravel(), lab.ravel()


# ------------------------------------------------------------------ columns -> evidence
def _lists(col: pa.ChunkedArray | pa.Array):
    """(lengths [n], flattened values) of a list column; nulls count as empty."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.list_value_length(col).fill_null(0).to_numpy().astype(np.int64), col.flatten()


def _column_values(tbl: pa.Table, name: str, n: int, default: int = 0):
    """(per-row counts, flat numpy values) of a scalar-or-list int column."""
    col = tbl.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        counts, vals = _lists(col)
        return counts, vals.fill_null(default).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.ones(n, np.int64), col.fill_null(default).to_numpy(zero_copy_only=False).astype(np.int64)


def _record_where(ids, i: int, offset: int = 0) -> str:
    return f"id={ids[i]}" if ids is not None else f"row={i + offset}"


def evidence_for_table(
    tbl: pa.Table, grid: Geometry, sigma_scale: float = 0.25, alpha: float = 0.1,
    use_segmentation: bool = True, on_error: str = "raise", report: ErrorReport | None = None,
    row_offset: int = 0,
) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Derived columns for the rows of ``tbl`` (``width``, ``height``, ``boxes`` [+ ``id``,
    ``box_image``, ``segmentation``]).

    Returns:
        ``keep`` [n] bool (rows not skipped) and the derived columns (kept rows only) as
        arrow arrays typed like :data:`visgrpo.data.schema.DERIVED_FEATURES`.
    """
    report = report if report is not None else ErrorReport()
    n = tbl.num_rows
    ids = tbl.column("id").to_pylist() if "id" in tbl.column_names else None
    n_img, heights = _column_values(tbl, "height", n)
    n_img_w, widths = _column_values(tbl, "width", n)
    if (n_img != n_img_w).any():  # ragged: such rows are reported; give them one 1x1 image
        hs, ws = np.split(heights, np.cumsum(n_img)[:-1]), np.split(widths, np.cumsum(n_img_w)[:-1])
        same = n_img == n_img_w
        heights = np.concatenate([h if s else [1] for h, s in zip(hs, same, strict=True)]).astype(np.int64)
        widths = np.concatenate([w if s else [1] for w, s in zip(ws, same, strict=True)]).astype(np.int64)
        n_img_w = np.where(same, n_img, -1)
        n_img = np.where(same, n_img, 1)
    n_box, flat = _lists(tbl.column("boxes"))
    boxes = np.asarray(flat.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(-1, 4)
    box_row = np.repeat(np.arange(n), n_box)  # [B]
    box_start = np.concatenate([[0], np.cumsum(n_box)])  # [n+1]
    box_k = np.arange(len(box_row)) - box_start[box_row]  # [B] index within its row
    if "box_image" in tbl.column_names:
        nbi, box_img = _column_values(tbl, "box_image", n)
    else:
        nbi, box_img = n_box, np.zeros(len(box_row), np.int64)
    segs = None
    if use_segmentation and "segmentation" in tbl.column_names:
        seg_col = tbl.column("segmentation").combine_chunks()
        if not (pa.types.is_list(seg_col.type) or pa.types.is_large_list(seg_col.type)):
            raise ValueError(f"column 'segmentation' is {seg_col.type}, expected a list of JSON texts, "
                             "one per box (data_tools/segmentation.py); re-run convert, or --no-segmentation")
        nseg, seg_flat = _lists(seg_col)
        seg_null = seg_col.is_null().to_numpy(zero_copy_only=False)  # [n] null list: no masks
        segs = seg_flat.to_pylist()
        seg_of_box = np.concatenate([[0], np.cumsum(nseg)])[box_row] + box_k  # [B]
    img_start = np.concatenate([[0], np.cumsum(n_img)])  # [n+1]

    # ---- per-record checks (vectorised; the first failure of a row is reported)
    bad: dict[int, RecordError] = {}

    def flag(rows, field_fn, reason_fn):
        for i in rows:
            i = int(i)
            if i not in bad:
                bad[i] = RecordError(_record_where(ids, i, row_offset), field_fn(i), reason_fn(i))

    flag(np.flatnonzero(n_img != n_img_w), lambda i: "width/height",
         lambda i: "width and height lists differ in length")
    flag(np.flatnonzero(n_img == 0), lambda i: "width/height", lambda i: "no image size")
    flag(np.flatnonzero(nbi != n_box), lambda i: "box_image", lambda i: f"{nbi[i]} entries for {n_box[i]} boxes")
    if segs is not None:
        flag(np.flatnonzero(~seg_null & (nseg != n_box)), lambda i: "segmentation",
             lambda i: f"{nseg[i]} entries for {n_box[i]} boxes")
    ok_rows = np.array([i not in bad for i in range(n)], bool)
    unit_ok = np.repeat(ok_rows, n_img)  # [U]
    h_u, w_u = np.where(unit_ok, heights, 1), np.where(unit_ok, widths, 1)  # [U]
    unit_row = np.repeat(np.arange(n), n_img)  # [U]
    uniq, inv = np.unique(np.stack([h_u, w_u], 1), axis=0, return_inverse=True)
    resized = np.zeros((len(uniq), 2), np.int64)
    for j, (h, w) in enumerate(uniq.tolist()):
        try:
            resized[j] = grid.resized_hw(h, w) if h > 0 and w > 0 else (-1, -1)
        except ValueError as e:  # e.g. aspect ratio beyond the processor's limit
            resized[j] = (-2, -2)
            msg = str(e)
        if resized[j, 0] < 0:
            rows = unit_row[(inv.reshape(-1) == j) & unit_ok]
            reason = f"image size {w}x{h} " + (
                "not positive" if resized[j, 0] == -1 else f"rejected by the processor: {msg}")
            flag(rows, lambda i: "width/height", lambda i, r=reason: r)
    resized = resized[inv.reshape(-1)]  # [U, 2]
    ok_rows = np.array([i not in bad for i in range(n)], bool)
    box_ok = ok_rows[box_row] & (box_img >= 0) & (box_img < n_img[box_row])  # [B]
    flag(box_row[ok_rows[box_row] & ~box_ok], lambda i: "box_image",
         lambda i: "index out of range of the sample's images")
    box_unit = img_start[box_row] + np.clip(box_img, 0, None)  # [B]
    box_unit = np.where(box_ok, box_unit, 0)
    W, H = w_u[box_unit].astype(np.float64), h_u[box_unit].astype(np.float64)  # [B]
    x0, y0, x1, y1 = boxes.T
    lim = np.stack([W, H, W, H], 1)
    wrong = (~np.isfinite(boxes).all(1) | (x1 <= x0) | (y1 <= y0) | (boxes < -BOX_TOL).any(1)
             | (boxes > lim + BOX_TOL).any(1))
    for bi in np.flatnonzero(wrong & box_ok):
        i = int(box_row[bi])
        if i not in bad:
            bad[i] = _box_error(boxes[bi], W[bi], H[bi], _record_where(ids, i, row_offset), int(box_k[bi]))
    for i in sorted(bad):
        handle(bad[i], on_error, report)
    keep = np.array([i not in bad for i in range(n)], bool)
    report.processed += n

    # ---- geometry of the kept units
    kept_units = np.flatnonzero(np.repeat(keep, n_img))  # [U']
    th_tw = resized[kept_units] // grid.token_pixels  # [U', 2]
    sel = np.flatnonzero(keep[box_row])  # boxes of kept rows
    new_unit = np.full(len(unit_row), -1)
    new_unit[kept_units] = np.arange(len(kept_units))
    bu = new_unit[box_unit[sel]]  # [B'] unit of each kept box
    order = sel[np.argsort(bu, kind="stable")]  # kept boxes grouped by unit, in row order
    bu_o = new_unit[box_unit[order]]  # [B']
    k_u = np.bincount(bu, minlength=len(kept_units))  # [U'] boxes per unit
    kstart = np.concatenate([[0], np.cumsum(k_u)])
    scale = np.stack([th_tw[:, 1] / w_u[kept_units], th_tw[:, 0] / h_u[kept_units]], 1)  # [U', 2]
    tb = np.clip(boxes[order], 0, lim[order]) * np.tile(scale[bu_o], 2)  # [B', 4] tokens
    labels = box_k[order] + 1  # [B'] 1-based
    n_tok = th_tw[:, 0] * th_tw[:, 1]  # [U']
    tok_start = np.concatenate([[0], np.cumsum(n_tok)])
    union = np.zeros(tok_start[-1], np.float32)
    region = np.zeros(tok_start[-1], np.int32)
    bump = np.zeros(tok_start[-1], np.float64)
    keys = np.stack([th_tw[:, 0], th_tw[:, 1], k_u], 1)
    gkeys, ginv = np.unique(keys, axis=0, return_inverse=True)
    for g, (th, tw, k) in enumerate(gkeys.tolist()):
        units = np.flatnonzero(ginv.reshape(-1) == g)
        if k == 0:
            continue
        idx = kstart[units][:, None] + np.arange(k)  # [S, K]
        b = tb[idx]  # [S, K, 4]
        per = box_cell_coverage(b, th, tw)  # [S, K, th, tw]
        uni = union_cell_coverage(b, th, tw)  # [S, th, tw]
        best = per.argmax(1)  # [S, th, tw]
        lab = np.take_along_axis(labels[idx][:, :, None, None], best[:, None], 1)[:, 0]  # [S, th, tw]
        lab = np.where(per.max(1) > 0, lab, 0)
        bmp = gaussian_cell_bumps(torch.from_numpy(np.ascontiguousarray(b, np.float64)), (th, tw),
                                  sigma_scale).numpy()  # [S, th, tw] float64
        pos = tok_start[units][:, None] + np.arange(th * tw)  # [S, th*tw]
        union[pos], region[pos], bump[pos] = (uni.reshape(len(units), -1), lab.reshape(len(units), -1),
                                              bmp.reshape(len(units), -1))
    if segs is not None:
        for u in np.flatnonzero(k_u > 0):
            ob = order[kstart[u]:kstart[u + 1]]
            if seg_null[box_row[ob[0]]]:
                continue
            entries = [segs[seg_of_box[j]] for j in ob]
            if not all(entries):
                continue
            i = int(box_row[ob[0]])
            h, w = int(h_u[kept_units[u]]), int(w_u[kept_units[u]])
            where = _record_where(ids, i, row_offset)
            th, tw = (int(v) for v in th_tw[u])
            m_t = decode_segmentations(entries, h, w, where, [f"segmentation[{box_k[j]}]" for j in ob])  # [K, W, H]
            if h % th == 0 and w % tw == 0:
                cov = block_coverage(m_t, th, tw)
            else:
                cov = segmentation_coverage(m_t.transpose(0, 2, 1), th, tw)
            _put_coverage(union, region, labels, tok_start, kstart, int(u), *cov)

    # ---- per-sample target over all its images' tokens
    unit_sample = np.repeat(np.arange(int(keep.sum())), n_img[keep])  # [U']
    tok_sample = np.repeat(unit_sample, n_tok)  # [T]
    n_s = np.bincount(tok_sample, weights=None, minlength=int(keep.sum())).astype(np.float64)
    mass = np.bincount(tok_sample, weights=bump, minlength=len(n_s))  # [S]
    m_t, n_t = mass[tok_sample], n_s[tok_sample]
    safe = np.where(m_t > 0, m_t, 1.0)
    target = np.where(m_t > 0, (1 - alpha) * bump / safe + alpha / n_t, 1.0 / n_t)
    tok_per_sample = np.bincount(unit_sample, weights=n_tok, minlength=len(n_s)).astype(np.int32)
    off = pa.array(np.concatenate([[0], np.cumsum(tok_per_sample)]).astype(np.int32))
    goff = pa.array(np.concatenate([[0], np.cumsum(n_img[keep])]).astype(np.int32))
    thw = np.concatenate([np.ones((len(kept_units), 1), np.int64), th_tw * grid.merge_size], 1)
    cols = {
        "grid_thw": pa.ListArray.from_arrays(
            goff, pa.FixedSizeListArray.from_arrays(pa.array(thw.ravel().astype(np.int32)), 3)),
        **{
            name: pa.ListArray.from_arrays(off, pa.array(values))
            for name, values in zip(
                EVIDENCE_FIELDS, (union.astype(np.float32), target.astype(np.float32), region), strict=True
            )
        },
    }
    return keep, cols


def _box_error(box, w, h, where: str, k: int) -> RecordError:
    """The RecordError :func:`data_tools.boxes.validate_boxes` gives one bad box, as ``boxes[k]``."""
    try:
        validate_boxes(np.asarray(box)[None], w, h, where, field="boxes")
    except RecordError as e:
        return RecordError(where, f"boxes[{k}]", e.reason)
    return RecordError(where, f"boxes[{k}]", f"invalid box {list(map(float, box))} for a {w:g}x{h:g} image")


# ------------------------------------------------------------------ datasets + CLI
INPUT_COLUMNS = ("id", "width", "height", "boxes", "box_image", "segmentation")


def build_masks(
    ds, grid: Geometry, sigma_scale: float = 0.25, alpha: float = 0.1,
    use_segmentation: bool = True, on_error: str = "raise", report: ErrorReport | None = None,
    chunk_size: int = 4096, progress: bool = True,
):
    """``ds`` with the derived columns for ``grid`` (existing ones are replaced).

    ``grid`` is any :class:`visgrpo.data.geometry.Geometry`: a :class:`ProcessorGrid`, or
    ``processor_geometry(processor)`` of a loaded model processor (the benchmark does this).

    Returns:
        ``(dataset, report)``; skipped rows (``on_error="skip"``) are dropped.
    """
    import datasets
    from tqdm.auto import tqdm

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--background-alpha must be in [0, 1], got {alpha}")
    if sigma_scale <= 0:
        raise ValueError(f"--sigma-scale must be positive, got {sigma_scale}")
    missing = [c for c in ("width", "height", "boxes") if c not in ds.column_names]
    if missing:
        raise ValueError(f"dataset lacks column(s) {missing}; masks needs width, height, boxes")
    report = report if report is not None else ErrorReport()
    base = ds.remove_columns([c for c in DERIVED_FEATURES if c in ds.column_names])
    tbl = base.select_columns([c for c in INPUT_COLUMNS if c in ds.column_names]).with_format("arrow")[:]
    keeps, parts = [], {k: [] for k in DERIVED_FEATURES}
    with tqdm(total=len(ds), desc="masks", unit="rec", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(ds), chunk_size):
            keep, cols = evidence_for_table(
                tbl.slice(start, chunk_size), grid, sigma_scale, alpha, use_segmentation,
                on_error, report, row_offset=start,
            )
            keeps.append(keep)
            for k, v in cols.items():
                parts[k].append(v)
            bar.update(len(keep))
    features = datasets.Features(DERIVED_FEATURES)
    schema = features.arrow_schema
    table = pa.Table.from_arrays(
        [pa.concat_arrays(parts[k]).cast(schema.field(k).type) if parts[k] else pa.array([], schema.field(k).type)
         for k in DERIVED_FEATURES],
        schema=schema,
    )
    derived = datasets.Dataset(table, info=datasets.DatasetInfo(features=features))
    keep = np.concatenate(keeps) if keeps else np.zeros(0, bool)
    if not keep.all():
        base = base.select(np.flatnonzero(keep)).flatten_indices()
    return datasets.concatenate_datasets([base, derived], axis=1), report


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset directory (or a directory of splits)")
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    add_processor_arguments(parser)
    parser.add_argument("--sigma-scale", type=float, default=0.25, help="Gaussian sigma / box side (EASE: 0.25)")
    parser.add_argument("--background-alpha", type=float, default=0.1, help="uniform mixture weight (EASE: 0.1)")
    parser.add_argument("--no-segmentation", action="store_true", help="use boxes even where segmentation masks exist")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    parser.add_argument("--report", default=None, help="write the skip report (JSON) here")
    parser.add_argument("--format", choices=("same", "arrow", "parquet"), default="same")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--no-progress", action="store_true")


def _one(src: Path, dst: Path, grid: ProcessorGrid, args, report: ErrorReport) -> None:
    ds, meta = load_dataset_dir(src)
    out, rep = build_masks(
        ds, grid, args.sigma_scale, args.background_alpha, not args.no_segmentation,
        args.on_error, report, progress=not args.no_progress,
    )
    no_box = records_without_boxes(out)
    if no_box:
        print(f"masks: {len(no_box)} records of {src} have no evidence boxes (first: record {no_box[0]!r}): "
              "their EASE target is uniform and SAYO has no region for them; other methods are unaffected",
              file=sys.stderr)
    fmt = args.format if args.format != "same" else ("parquet" if (src / "data.parquet").exists() else "arrow")
    meta = {**meta, "processor": grid.fingerprint(), "masks": {
        "sigma_scale": args.sigma_scale, "background_alpha": args.background_alpha,
        "coverage": "boxes" if args.no_segmentation else "segmentation where present, else boxes",
        "processor_source": grid.source, "skipped": rep.skipped,
    }}
    save_dataset(out, dst, meta=meta, fmt=fmt, overwrite=True)


def records_without_boxes(ds) -> list[str]:
    """Ids of the records whose ``boxes`` list is empty (read from Arrow, no image decoded)."""
    tbl = ds.select_columns([c for c in ("id", "boxes") if c in ds.column_names]).with_format("arrow")[:]
    counts = pc.fill_null(pc.list_value_length(tbl.column("boxes")), 0).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(counts == 0)
    ids = tbl.column("id") if "id" in tbl.column_names else None
    return [str(ids[int(i)].as_py()) if ids is not None else f"row {int(i)}" for i in rows]


def run(args) -> int:
    src, out = Path(args.dataset), Path(args.out)
    splits = split_dirs(src)  # a missing directory: FileNotFoundError, exit 1 via main
    grid = grid_from_args(args)
    report = ErrorReport()
    # a bad record raises RecordError: nothing is written, data_tools.cli.main prints it (exit 1)
    with atomic_output_dir(out, overwrite=args.overwrite) as tmp:
        for name in splits or [None]:
            _one(src / name if name else src, tmp / name if name else tmp, grid, args, report)
        if splits:  # the top-level metadata of a directory of splits, with the fingerprint
            top = json.loads((src / META_FILE).read_text()) if (src / META_FILE).exists() else {}
            (tmp / META_FILE).write_text(json.dumps({**top, "processor": grid.fingerprint()}, indent=2))
    if args.report:
        report.write(args.report)
    if report.skipped:
        print(report.summary(), file=sys.stderr)
    print(f"masks: {report.processed - report.skipped} records -> {out} ({grid.fingerprint()})")
    return 0
