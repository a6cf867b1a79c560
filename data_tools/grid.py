"""The model's merged visual-token grid, asked of the family's real image processor.

A Qwen-VL image processor resizes an ``H x W`` image with its module's ``smart_resize`` to
``(H', W')`` (multiples of ``patch_size * merge_size``, ``min_pixels <= H'W' <= max_pixels``)
and reports ``image_grid_thw = [1, H'/patch, W'/patch]``; one merged visual token covers
``patch*merge`` pixels of the resized image (docs/methods.md, Evidence-to-token mapping). This module never
re-derives that arithmetic: it imports ``smart_resize`` from the module that defines the
processor class in use and calls it with the processor's own ``size`` settings.

Family names resolve to the image processor class transformers 5 uses for the family
(``Qwen2VLImageProcessor``, torchvision backend, for all three: the ``image_processor_type``
``Qwen2VLImageProcessorFast`` of the released Qwen3-VL configs maps to it; the PIL backend
``Qwen2VLImageProcessorPil`` is available with ``backend="pil"``) configured like the
released checkpoints' ``preprocessor_config.json`` -- the class defaults differ
(``longest_edge`` 1003520):

=============  =============================  =====  =====  ==========  ============
family         released checkpoint            patch  merge  min_pixels  max_pixels
=============  =============================  =====  =====  ==========  ============
qwen2_vl       Qwen/Qwen2-VL-7B-Instruct      14     2      3136        12845056
qwen2_5_vl     Qwen/Qwen2.5-VL-7B-Instruct    14     2      3136        12845056
qwen3_vl       Qwen/Qwen3-VL-8B-Instruct      16     2      65536       16777216
=============  =============================  =====  =====  ==========  ============

(Qwen2/2.5-VL: ``min_pixels`` = 56*56, ``max_pixels`` = 28*28*16384, CLIP mean/std;
Qwen3-VL: ``size = {"shortest_edge": 65536, "longest_edge": 16777216}`` i.e. 256^2 .. 4096^2,
mean/std 0.5.) In transformers 5, ``min_pixels``/``max_pixels`` are ``size.shortest_edge``/
``size.longest_edge``. A model or processor directory is loaded with
``AutoImageProcessor.from_pretrained`` (its family from
:func:`visgrpo.models.families.family_of_dir`); ``--min-pixels/--max-pixels`` override either.

The geometry itself -- fingerprint, resized sizes, grids -- is the training library's
:class:`visgrpo.data.geometry.Geometry`; :class:`ProcessorGrid` subclasses it, so the
fingerprint ``masks`` stores and the one the EvidenceDataModule computes from the model's
processor come from the same function, and the per-family settings (sizes, released
checkpoint, normalisation) are :data:`visgrpo.models.families.FAMILIES` (the tool imports
the library's data and model layers, never the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from visgrpo.data.geometry import Geometry, image_processor_settings, smart_resize_of
from visgrpo.models.families import FAMILIES, family_of_dir
from visgrpo.models.loading import TINY_PREFIX, tiny_model

BACKENDS = {"torchvision": "Qwen2VLImageProcessor", "pil": "Qwen2VLImageProcessorPil"}


def _size_value(size, key: str) -> int:
    value = size[key] if isinstance(size, dict) else getattr(size, key, None)
    if value is None:
        raise ValueError(f"image processor size has no {key!r}: {size}")
    return int(value)


@dataclass(frozen=True)
class ProcessorGrid(Geometry):
    """A :class:`visgrpo.data.geometry.Geometry` (fingerprint, ``smart_resize`` grids: the
    training library's own code) together with the image processor it was read from.

    Attributes:
        image_processor: the transformers image processor (its ``size`` decided min/max).
        source: family name or directory it was loaded from.
    """

    image_processor: Any = field(default=None, compare=False, repr=False)
    source: str = field(default="", compare=False)

    @classmethod
    def from_image_processor(cls, family: str, image_processor, source: str = "") -> ProcessorGrid:
        """Settings and ``smart_resize`` read from ``image_processor`` (as
        :func:`visgrpo.data.geometry.processor_geometry` does for a full processor).
        """
        return cls(family, **image_processor_settings(image_processor),
                   smart_resize=smart_resize_of(image_processor),
                   image_processor=image_processor, source=source)


def family_image_processor(family: str, backend: str = "torchvision", **overrides):
    """The family's image processor with the released checkpoint's settings.

    Args:
        family: a key of :data:`visgrpo.models.families.FAMILIES`.
        backend: ``torchvision`` (``Qwen2VLImageProcessor``) or ``pil``.
        overrides: ``min_pixels`` / ``max_pixels`` (``None`` keeps the released value).
    """
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; valid: {', '.join(sorted(FAMILIES))}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    import transformers

    fam = FAMILIES[family]
    lo = overrides.get("min_pixels") or fam.min_pixels
    hi = overrides.get("max_pixels") or fam.max_pixels
    cls = getattr(transformers, BACKENDS[backend])
    return cls(
        patch_size=fam.patch_size, merge_size=fam.merge_size,
        temporal_patch_size=fam.temporal_patch_size,
        image_mean=list(fam.image_mean), image_std=list(fam.image_std),
        size={"shortest_edge": int(lo), "longest_edge": int(hi)},
    )


def load_processor_grid(
    processor: str, min_pixels: int | None = None, max_pixels: int | None = None,
    backend: str = "torchvision",
) -> ProcessorGrid:
    """A :class:`ProcessorGrid` from a family name or a model/processor directory.

    Args:
        processor: ``qwen2_vl`` | ``qwen2_5_vl`` | ``qwen3_vl``, a directory, or
            ``tiny:<family>`` (the tiny model directory, built on first use like ``visgrpo fit`` does).
        min_pixels, max_pixels: override the processor's ``size`` bounds.
        backend: image-processor backend for family names.
    """
    if processor in FAMILIES:
        ip = family_image_processor(processor, backend, min_pixels=min_pixels, max_pixels=max_pixels)
        return ProcessorGrid.from_image_processor(processor, ip, processor)
    if processor.startswith(TINY_PREFIX):
        processor = str(tiny_model(processor[len(TINY_PREFIX):]))
    path = Path(processor)
    if not path.is_dir():
        raise ValueError(
            f"--processor {processor!r} is neither a family ({', '.join(sorted(FAMILIES))}) "
            "nor a model/processor directory"
        )
    from transformers import AutoImageProcessor

    family = family_of_dir(path)
    ip = AutoImageProcessor.from_pretrained(str(path))
    if min_pixels is not None or max_pixels is not None:
        ip.size = {
            "shortest_edge": int(min_pixels or _size_value(ip.size, "shortest_edge")),
            "longest_edge": int(max_pixels or _size_value(ip.size, "longest_edge")),
        }
    return ProcessorGrid.from_image_processor(family, ip, str(path))


def add_processor_arguments(parser) -> None:
    """``--processor``, ``--min-pixels``, ``--max-pixels``."""
    parser.add_argument(
        "--processor", required=True, metavar="FAMILY|DIR|tiny:FAMILY",
        help=f"model family ({' | '.join(FAMILIES)}; released-checkpoint settings), "
        "a model/processor directory, or tiny:FAMILY (the tiny model, built into artifacts/ on first use)",
    )
    parser.add_argument("--min-pixels", type=int, default=None, help="override min_pixels")
    parser.add_argument("--max-pixels", type=int, default=None, help="override max_pixels")


def grid_from_args(args) -> ProcessorGrid:
    return load_processor_grid(args.processor, args.min_pixels, args.max_pixels)


# ------------------------------------------------------------------ cell geometry (pure)
# Coverage and smoothed targets on a th x tw merged-token grid (used by data_tools/masks.py).
def box_cell_coverage(b: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Fraction of each cell covered by each box.

    Args:
        b: ``[S, K, 4]`` boxes ``x0, y0, x1, y1`` in token units inside ``[0, tw] x [0, th]``.

    Returns:
        ``[S, K, th, tw]`` coverage (separable interval overlaps, exact).
    """
    jx, jy = np.arange(tw), np.arange(th)
    ox = np.clip(np.minimum(b[..., 2:3], jx + 1) - np.maximum(b[..., 0:1], jx), 0, 1)  # [S, K, tw]
    oy = np.clip(np.minimum(b[..., 3:4], jy + 1) - np.maximum(b[..., 1:2], jy), 0, 1)  # [S, K, th]
    return oy[..., :, None] * ox[..., None, :]  # [S, K, th, tw]


def _axis_pieces(lo: np.ndarray, hi: np.ndarray, n: int):
    """Elementary intervals between all box edges and cell edges along one axis."""
    s = lo.shape[0]
    edges = np.concatenate([lo, hi, np.broadcast_to(np.arange(n + 1.0), (s, n + 1))], 1)
    edges.sort(axis=1)  # [S, 2K+n+1]
    width = np.diff(edges, axis=1)  # [S, P]
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])  # [S, P]
    inside = (lo[:, :, None] <= mid[:, None, :]) & (mid[:, None, :] < hi[:, :, None])  # [S, K, P]
    cell = np.minimum(mid.astype(np.int64), n - 1)  # [S, P]
    onehot = (cell[:, :, None] == np.arange(n)).astype(np.float64)  # [S, P, n]
    return width, inside.astype(np.float64), onehot


def union_cell_coverage(b: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Exact fraction of each cell covered by the union of the boxes of each sample.

    Coordinate compression: the box and cell edges cut the plane into elementary
    rectangles, each wholly inside or outside every box and inside one cell.

    Args:
        b: ``[S, K, 4]`` boxes in token units (K >= 1).

    Returns:
        ``[S, th, tw]`` union coverage in [0, 1].
    """
    if b.shape[1] == 1:
        return box_cell_coverage(b, th, tw)[:, 0]
    dx, inx, ox = _axis_pieces(b[..., 0], b[..., 2], tw)  # [S, Px], [S, K, Px], [S, Px, tw]
    dy, iny, oy = _axis_pieces(b[..., 1], b[..., 3], th)  # [S, Py], [S, K, Py], [S, Py, th]
    covered = (iny.transpose(0, 2, 1) @ inx) > 0  # [S, Py, Px]: inside some box
    area = covered * dy[:, :, None] * dx[:, None, :]  # [S, Py, Px]
    return oy.transpose(0, 2, 1) @ area @ ox  # [S, th, tw]


@lru_cache(maxsize=256)
def pixel_cell_overlap(pixels: int, cells: int) -> np.ndarray:
    """``[cells, pixels]`` float32: length of each original pixel [x, x+1] inside each cell
    (cells of ``pixels / cells`` px). Whole pixels weigh exactly 1, so summing a mask's pixels
    with it in float32 is exact (integer counts), unlike summing weights of ``1/step``.
    """
    step = pixels / cells  # a cell's extent in original pixels
    x = np.arange(pixels, dtype=np.float64)
    lo = np.arange(cells, dtype=np.float64)[:, None] * step  # [cells, 1]
    ov = np.clip(np.minimum(x + 1, lo + step) - np.maximum(x, lo), 0, None)  # [cells, pixels]
    return ov.astype(np.float32)


def pixel_cell_weights(pixels: int, cells: int) -> np.ndarray:
    """``[cells, pixels]`` float64: share of each original pixel in each cell, averaged
    (:func:`pixel_cell_overlap` / cell extent).
    """
    return pixel_cell_overlap(pixels, cells) / (pixels / cells)


def segmentation_coverage(masks: np.ndarray, th: int, tw: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-averaged coverage of ``masks`` [K, H, W] -> (union [th, tw], per object [K, th, tw]).

    Pixel counts per cell in float32 (exact: whole pixels weigh 1), divided by the cell
    area in float64, so a fully covered cell is exactly 1.
    """
    _, h, w = masks.shape
    ay, ax = pixel_cell_overlap(h, th), pixel_cell_overlap(w, tw)  # [th, H], [tw, W]
    m = masks.astype(np.float32)  # [K, H, W]
    area = (h / th) * (w / tw)  # original pixels per cell
    per = (ay @ m @ ax.T) / area  # [K, th, tw]
    union = (ay @ m.max(axis=0) @ ax.T) / area  # [th, tw]
    return np.clip(union, 0, 1), np.clip(per, 0, 1)


def block_coverage(masks_t: np.ndarray, th: int, tw: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`segmentation_coverage` when the cells hold whole pixels (``th`` divides ``H``,
    ``tw`` divides ``W``), from the masks in COCO's column-major layout ``masks_t`` [K, W, H]
    (what ``pycocotools`` decodes, transposed: no copy). The pixel counts are block sums
    of a reshape (float32, exact for whole pixels), the same numbers as the overlap products,
    so the outputs are equal, at a fraction of the cost.
    """
    k, w, h = masks_t.shape
    if h % th or w % tw:
        raise ValueError(f"cells of {h}/{th} x {w}/{tw} px are not whole pixels")
    area = (h / th) * (w / tw)  # original pixels per cell

    def counts(m: np.ndarray) -> np.ndarray:  # [n, W, H] -> [n, th, tw]
        cols = m.reshape(len(m), tw, w // tw, h).sum(2, dtype=np.float32)  # [n, tw, H]
        return cols.reshape(len(m), tw, th, h // th).sum(-1).transpose(0, 2, 1)  # [n, th, tw]

    per = counts(masks_t) / area  # [K, th, tw]
    union = per[0] if k == 1 else counts(masks_t.max(axis=0, keepdims=True))[0] / area  # [th, tw]
    return np.clip(union, 0, 1), np.clip(per, 0, 1)
