"""``visgrpo-data stats DIR``: counts, tokens per image, evidence coverage histogram.

Prints a table: records per ``answer_type`` / ``source`` (/ ``question_type`` when present),
boxes per record, merged visual tokens per image (from ``grid_thw``, or from ``--processor``
when the masks are not built), and the histogram of the per-record evidence coverage (share
of the record's tokens covered by evidence: ``sum(evidence_mask) / tokens``; or, without
masks, the box-union area share is not computed and only box counts are shown).
``--png`` saves the two histograms with matplotlib (Agg); ``--json`` the numbers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from visgrpo.data.io import load_dataset_dir, split_dirs


def _col(tbl, name):
    return tbl.column(name).to_pylist() if name in tbl.column_names else None


def compute_stats(ds, grid=None) -> dict:
    """The statistics of one dataset (no image is decoded)."""
    cols = [c for c in ("answer_type", "source", "question_type", "boxes", "width", "height",
                        "grid_thw", "evidence_mask") if c in ds.column_names]
    tbl = ds.select_columns(cols).with_format("arrow")[:]
    out: dict = {"records": tbl.num_rows}
    for c in ("answer_type", "source", "question_type"):
        if c in tbl.column_names:
            out[f"by_{c}"] = dict(Counter(_col(tbl, c)).most_common())
    if "boxes" in tbl.column_names:
        nb = pc.list_value_length(tbl.column("boxes")).fill_null(0).to_numpy(zero_copy_only=False)
        out["boxes_per_record"] = dict(sorted(Counter(map(int, nb)).items()))
    tokens = None
    if "grid_thw" in tbl.column_names:
        merge = 2  # the supported families all merge 2x2 patches
        tokens = [t * h * w // merge**2 for g in _col(tbl, "grid_thw") for t, h, w in g]
    elif grid is not None:
        hs, ws = _col(tbl, "height"), _col(tbl, "width")
        flat_h = [h for x in hs for h in (x if isinstance(x, list) else [x])]
        flat_w = [w for x in ws for w in (x if isinstance(x, list) else [x])]
        tokens = (np.prod(grid.tokens_hw_many(flat_h, flat_w), axis=1)).tolist()
    if tokens:
        t = np.asarray(tokens)
        out["tokens_per_image"] = {"images": int(t.size), "min": int(t.min()), "median": float(np.median(t)),
                                   "mean": float(t.mean()), "max": int(t.max())}
        out["_tokens"] = t
    if "evidence_mask" in tbl.column_names:
        masks = tbl.column("evidence_mask").combine_chunks()
        n = pc.list_value_length(masks).to_numpy(zero_copy_only=False)
        vals = masks.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        row = np.repeat(np.arange(len(n)), n)
        share = np.bincount(row, weights=vals, minlength=len(n)) / np.maximum(n, 1)
        top = min(1.0, max(0.05, np.ceil(share.max(initial=0.0) * 20) / 20))  # adaptive range
        hist, bins = np.histogram(share, np.linspace(0.0, top, 11))
        out["evidence_coverage"] = {"mean": float(share.mean()), "bins": bins.tolist(), "counts": hist.tolist()}
        out["_share"] = share
    return out


def format_table(stats: dict, title: str) -> str:
    lines = [f"== {title}: {stats['records']} records"]
    for key in ("by_answer_type", "by_source", "by_question_type", "boxes_per_record"):
        if key in stats:
            lines.append(f"  {key.replace('_', ' ')}:")
            lines += [f"    {k!s:>14}  {v:8d}" for k, v in stats[key].items()]
    if "tokens_per_image" in stats:
        t = stats["tokens_per_image"]
        lines.append(f"  tokens per image: min {t['min']}  median {t['median']:g}  mean {t['mean']:.1f}  "
                     f"max {t['max']}  ({t['images']} images)")
    if "evidence_coverage" in stats:
        e = stats["evidence_coverage"]
        lines.append(f"  evidence coverage per record (share of tokens; mean {e['mean']:.3f}):")
        peak = max(e["counts"]) or 1
        for lo, hi, c in zip(e["bins"][:-1], e["bins"][1:], e["counts"], strict=True):
            lines.append(f"    [{lo:.3f}, {hi:.3f})  {c:8d}  {'#' * int(round(40 * c / peak))}")
    return "\n".join(lines)


def save_png(stats_by_split: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, s in stats_by_split.items():
        if "_tokens" in s:
            axes[0].hist(s["_tokens"], bins=30, alpha=0.6, label=name)
        if "_share" in s:
            axes[1].hist(s["_share"], bins=20, alpha=0.6, label=name)
    axes[0].set(title="merged visual tokens per image", xlabel="tokens", ylabel="images")
    axes[1].set(title="evidence coverage per record", xlabel="share of tokens", ylabel="records")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="dataset directory (or a directory of splits)")
    parser.add_argument("--processor", default=None,
                        help="family or model dir, for token counts when masks are not built")
    parser.add_argument("--png", default=None, help="save histograms to this PNG")
    parser.add_argument("--json", default=None, help="save the statistics as JSON")


def run(args) -> int:
    path = Path(args.dataset)
    splits = split_dirs(path)
    grid = None
    if args.processor:
        from data_tools.grid import load_processor_grid

        grid = load_processor_grid(args.processor)
    result = {}
    for name in splits or [""]:
        ds, _ = load_dataset_dir(path / name if name else path)
        result[name or path.name] = compute_stats(ds, grid)
        print(format_table(result[name or path.name], name or str(path)))
    if args.png:
        save_png(result, args.png)
        print(f"histograms: {args.png}")
    if args.json:
        clean = {k: {a: b for a, b in v.items() if not a.startswith("_")} for k, v in result.items()}
        Path(args.json).write_text(json.dumps(clean, indent=2))
    return 0
