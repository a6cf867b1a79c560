"""Processor geometry: resized image sizes, visual-token grids and the processor fingerprint.

Qwen-VL image processors resize an image of ``h x w`` pixels with ``smart_resize`` to
``(h', w')``, multiples of ``patch_size * merge_size`` with ``min_pixels <= h' w' <= max_pixels``;
the vision tower sees ``t x (h'/patch) x (w'/patch)`` patches (``grid_thw``, t = 1 for an
image) and the language model one ``<|image_pad|>`` token per ``merge_size**2`` patches
(docs/methods.md, "Evidence-to-token mapping"). Everything here is computed from the image
size alone (no pixels decoded), which is what lets the DataModule filter over-long prompts
cheaply, and it agrees with the processor's own output (checked again at collation).

This is the single source of truth for the geometry and the processor fingerprint: the
training side (:func:`processor_geometry` of the model's processor, checked against the
dataset's metadata by the EvidenceDataModule) and the data tools (``data_tools.grid``,
whose ``ProcessorGrid`` is a :class:`Geometry`) compute them with the same code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from visgrpo.models.families import family_of_processor

#: The processor fingerprint's keys (visgrpo.data.schema.FINGERPRINT_KEYS is this tuple).
FINGERPRINT_FIELDS = ("family", "patch_size", "merge_size", "min_pixels", "max_pixels")

def smart_resize_of(image_processor) -> Callable:
    """The ``smart_resize`` function of the module defining ``image_processor``'s class
    (never re-derived by hand).
    """
    for cls in type(image_processor).__mro__:
        fn = getattr(inspect.getmodule(cls), "smart_resize", None)
        if callable(fn):
            return fn
    raise TypeError(f"{type(image_processor).__name__}: its module has no smart_resize function")


def _qwen2_vl_smart_resize(*args, **kwargs):
    """The ``smart_resize`` of ``Qwen2VLImageProcessor`` (the image processor of all three
    families in transformers 5), for a :class:`Geometry` built without a processor.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    return smart_resize(*args, **kwargs)


@lru_cache(maxsize=65536)
def _resized(smart_resize: Callable, factor: int, lo: int, hi: int, h: int, w: int) -> tuple[int, int]:
    rh, rw = smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    return int(rh), int(rw)


@dataclass(frozen=True)
class Geometry:
    """The image-processor settings that decide resized sizes and token counts.

    Attributes:
        family: ``qwen2_vl`` | ``qwen2_5_vl`` | ``qwen3_vl``.
        patch_size, merge_size: of the vision tower (a merged token is ``patch*merge`` px).
        min_pixels, max_pixels: the resize budget (``size.shortest_edge`` / ``longest_edge``).
        smart_resize: the processor module's ``smart_resize`` (default: Qwen2-VL's); not part
            of the fingerprint or of equality.
    """

    family: str
    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int
    smart_resize: Callable = field(default=_qwen2_vl_smart_resize, compare=False, repr=False)

    @property
    def token_pixels(self) -> int:
        """Side (resized-image pixels) of one merged visual token."""
        return self.patch_size * self.merge_size

    def fingerprint(self) -> dict:
        """``{family, patch_size, merge_size, min_pixels, max_pixels}``: the processor
        fingerprint stored with evidence datasets (:data:`visgrpo.data.schema.FINGERPRINT_KEYS`).
        """
        return {k: getattr(self, k) for k in FINGERPRINT_FIELDS}

    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        """``(h', w')`` of an ``height x width`` image after the processor's ``smart_resize``
        (cached per size; errors such as an extreme aspect ratio propagate).
        """
        return _resized(self.smart_resize, self.token_pixels, int(self.min_pixels), int(self.max_pixels),
                        int(height), int(width))

    def grid_thw(self, height: int, width: int) -> list[int]:
        """``[1, h'/patch, w'/patch]`` for one image."""
        h, w = self.resized_hw(height, width)
        return [1, h // self.patch_size, w // self.patch_size]

    def num_image_tokens(self, height: int, width: int) -> int:
        """Number of ``<|image_pad|>`` tokens the prompt holds for one image."""
        t, gh, gw = self.grid_thw(height, width)
        return t * gh * gw // (self.merge_size**2)

    def resized_hw_many(self, heights, widths) -> np.ndarray:
        """``[n, 2]`` int64 ``(h', w')`` for many sizes (``smart_resize`` once per distinct size)."""
        hw = np.stack([np.asarray(heights, np.int64), np.asarray(widths, np.int64)], 1)  # [n, 2]
        if hw.shape[0] == 0:
            return np.zeros((0, 2), np.int64)
        uniq, inverse = np.unique(hw, axis=0, return_inverse=True)  # [u, 2], [n]
        out = np.array([self.resized_hw(h, w) for h, w in uniq.tolist()], np.int64)  # [u, 2]
        return out[inverse.reshape(-1)]  # [n, 2]

    def grid_thw_many(self, heights, widths) -> np.ndarray:
        """``[n, 3]`` ``image_grid_thw`` rows ``[1, h'/patch, w'/patch]``."""
        hw = self.resized_hw_many(heights, widths) // self.patch_size  # [n, 2]
        return np.concatenate([np.ones((hw.shape[0], 1), np.int64), hw], 1)  # [n, 3]

    def tokens_hw_many(self, heights, widths) -> np.ndarray:
        """``[n, 2]`` merged-token grid ``(h'/(patch*merge), w'/(patch*merge))``."""
        return self.resized_hw_many(heights, widths) // self.token_pixels  # [n, 2]


def image_processor_settings(image_processor) -> dict:
    """``patch_size``, ``merge_size``, ``min_pixels``, ``max_pixels`` of an image processor:
    ``size.shortest_edge``/``longest_edge`` (what transformers 5 resizes with), else legacy
    ``min_pixels``/``max_pixels`` attributes.
    """
    ip, size = image_processor, getattr(image_processor, "size", None)

    def _get(key: str, size_key: str) -> int:
        value = None
        if size is not None:
            value = size.get(size_key) if isinstance(size, dict) else getattr(size, size_key, None)
        if value is None:
            value = getattr(ip, key, None)
        if value is None:
            raise ValueError(
                f"image processor {type(ip).__name__} has neither {key} nor size.{size_key}"
            )
        return int(value)

    return {
        "patch_size": int(ip.patch_size),
        "merge_size": int(ip.merge_size),
        "min_pixels": _get("min_pixels", "shortest_edge"),
        "max_pixels": _get("max_pixels", "longest_edge"),
    }


def processor_geometry(processor) -> Geometry:
    """Read family, patch/merge size, pixel budget and ``smart_resize`` from a loaded processor."""
    ip = processor.image_processor
    return Geometry(family_of_processor(processor), **image_processor_settings(ip),
                    smart_resize=smart_resize_of(ip))
