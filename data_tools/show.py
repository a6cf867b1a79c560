"""``visgrpo-data show DIR --index I --out PNG``: one record, drawn.

Each image of the record with its evidence boxes (labelled), the merged visual-token grid
(lines every ``W/tw`` x ``H/th`` original pixels: one token = ``patch*merge`` pixels of the
resized image) and the ``evidence_target`` heatmap overlaid (its slice for that image).
Without derived columns, ``--processor`` gives the grid (no heatmap). matplotlib, Agg.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np

from visgrpo.data.images import DEFAULT_MAX_PIXELS, decode_value
from visgrpo.data.io import load_dataset_dir


def render(
    row: dict, out: str | Path, grid=None, merge_size: int = 2,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Path:
    """Draw ``row`` (a decoded dataset record) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = [  # upright 8-bit RGB, as the training decode sees them
        decode_value(im, max_pixels)
        for im in (list(row["images"]) if row.get("images") is not None else [row["image"]])
    ]
    boxes = row.get("boxes") or []
    labels = row.get("box_labels") or [f"box {k + 1}" for k in range(len(boxes))]
    box_img = row.get("box_image") or [0] * len(boxes)
    if row.get("grid_thw"):
        tok_hw = [(h // merge_size, w // merge_size) for _, h, w in row["grid_thw"]]
    elif grid is not None:
        tok_hw = [tuple(v) for v in grid.tokens_hw_many([im.height for im in images], [im.width for im in images])]
    else:
        tok_hw = None
    target = np.asarray(row["evidence_target"], np.float64) if row.get("evidence_target") else None
    fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.8), squeeze=False)
    start = 0
    for j, (ax, im) in enumerate(zip(axes[0], images, strict=True)):
        w, h = im.width, im.height
        ax.imshow(im, extent=(0, w, h, 0))
        if tok_hw is not None:
            th, tw = (int(v) for v in tok_hw[j])
            if target is not None:
                q = target[start:start + th * tw].reshape(th, tw)
                ax.imshow(q, extent=(0, w, h, 0), cmap="inferno", alpha=0.45, interpolation="nearest")
                start += th * tw
            for x in np.linspace(0, w, tw + 1):
                ax.axvline(x, color="white", lw=0.5, alpha=0.7)
            for y in np.linspace(0, h, th + 1):
                ax.axhline(y, color="white", lw=0.5, alpha=0.7)
        for k, (b, lab) in enumerate(zip(boxes, labels, strict=False)):
            if box_img[k] != j:
                continue
            x0, y0, x1, y1 = b
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.8))
            ax.text(x0, y0 - 2, f"{k + 1}: {lab}", color="lime", fontsize=8, va="bottom")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_axis_off()
    title = f"{row.get('id', '')}: {row.get('question', '')}\nanswer: {row.get('answer', '')}"
    fig.suptitle("\n".join(textwrap.wrap(title, 70, replace_whitespace=False)), fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="dataset directory")
    parser.add_argument("--index", type=int, default=0, help="record index")
    parser.add_argument("--out", required=True, help="PNG path")
    parser.add_argument("--processor", default=None, help="family or model dir (grid without masks)")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels (default {DEFAULT_MAX_PIXELS})")


def run(args) -> int:
    ds, meta = load_dataset_dir(args.dataset)
    if not -len(ds) <= args.index < len(ds):
        print(f"show: index {args.index} out of range of {len(ds)} records", file=sys.stderr)
        return 2
    grid = None
    if args.processor:
        from data_tools.grid import load_processor_grid

        grid = load_processor_grid(args.processor)
    merge = int((meta.get("processor") or {}).get("merge_size", 2))
    out = render(ds[args.index % len(ds)], args.out, grid, merge, args.max_image_pixels)
    print(f"show: {out}")
    return 0
