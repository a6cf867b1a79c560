"""Image perturbations for the masked-image signal (VPPO, PAPO; docs/methods.md, VPPO and PAPO).

A perturbation rewrites the processor's ``pixel_values`` in place of the image, so the
policy's log-probs on the perturbed image (``Signals.masked_logp``) come from one more
forward of the same prompt + response. It works on the processor's OWN patch grid: Qwen-VL
``pixel_values`` [sum_i t_i h_i w_i, C * temporal * p * p] holds one row per patch, the
rows of image ``i`` in the processor's merge order ``(t, h // m, w // m, h % m, w % m)``
and each row channel-major ``(C, temporal, p, p)``. Blackening a patch sets its row to the
normalised value of a black pixel, ``(0 - mean_c) / std_c`` per channel: exactly what the
processor outputs for a resized image whose pixels there are 0 (the authors' "black", a
uint8 0 before rescale and normalisation).

Randomness is seeded per image from ``(seed, row seed, image index)``; the training module
derives the row seeds from its seed, the RL step and each response's (group, ordinal in
group), so masks do not depend on micro-batching and a resumed run draws the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from visgrpo.registry import Registry

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant (seed mixing)
_MASK63 = (1 << 63) - 1


@dataclass(frozen=True)
class Perturbation:
    """Which perturbation the masked-image forward applies, with its settings (hashable).

    Attributes:
        name: a :data:`PERTURBATIONS` entry (``patch_blackening``).
        prob: probability that a cell is blackened.
        patch_size: side of a blackened cell in resized-image pixels; a multiple of the
            processor's patch size (None: the processor's patch, 14 px on Qwen2/2.5-VL).
        per_response: draw a mask for every response (VPPO's code); False: one per prompt,
            shared by the G responses of its group (PAPO's code), which also lets the masked
            forward encode each group's images once.
        with_grad: a forward with grad keeps the masked forward's graph (PAPO's
            ``RECOMPUTE_AUG_LOG_PROBS``); False: the masked log-probs are constants.
    """

    name: str = "patch_blackening"
    prob: float = 0.5
    patch_size: int | None = None
    per_response: bool = True
    with_grad: bool = False

    def __post_init__(self) -> None:
        if self.name not in PERTURBATIONS:
            raise KeyError(f"unknown perturbation {self.name!r}; valid: {', '.join(PERTURBATIONS.names())}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"Perturbation.prob must be in [0, 1], got {self.prob}")
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError(f"Perturbation.patch_size must be >= 1 or None, got {self.patch_size}")


@dataclass(frozen=True)
class PixelLayout:
    """How the processor lays out ``pixel_values`` (the patch grid the model sees).

    Attributes:
        patch_size: vision patch side p in pixels.
        merge_size: spatial merge m (rows come in m x m blocks).
        temporal_patch_size: frames per patch (an image is repeated to fill them).
        image_mean, image_std: the processor's per-channel normalisation.
    """

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    def black_row(self, dtype, device) -> Tensor:
        """[C * temporal * p * p] the normalised row of an all-black patch."""
        black = [(0.0 - m) / s for m, s in zip(self.image_mean, self.image_std, strict=True)]
        per = self.temporal_patch_size * self.patch_size**2
        return torch.tensor(black, dtype=torch.float64).repeat_interleave(per).to(device=device, dtype=dtype)


def mix_seed(*parts: int) -> int:
    """A non-negative 63-bit seed from integers (order matters; splitmix-style mixing)."""
    h = 0
    for p in parts:
        h = (h ^ (int(p) & ((1 << 64) - 1))) * _MIX & ((1 << 64) - 1)
        h ^= h >> 31
    return h & _MASK63


def patch_grid_cells(grid_thw: Tensor, merge: int, cell: int) -> list[Tensor]:
    """Per image, [t h w] long: the cell index of each ``pixel_values`` row (merge order).

    Cells are ``cell x cell`` patches from the image's top-left corner (the last ones
    clipped at the border), numbered row-major over ``ceil(h / cell) x ceil(w / cell)``.
    """
    out = []
    for t, h, w in grid_thw.tolist():
        hb = torch.arange(h // merge).view(h // merge, 1, 1, 1)
        wb = torch.arange(w // merge).view(1, w // merge, 1, 1)
        mh = torch.arange(merge).view(1, 1, merge, 1)
        mw = torch.arange(merge).view(1, 1, 1, merge)
        ph, pw = hb * merge + mh, wb * merge + mw  # patch coordinates in merge order
        cells = (ph // cell) * math.ceil(w / cell) + (pw // cell)  # [h/m, w/m, m, m]
        out.append(cells.reshape(-1).repeat(t))
    return out


#: name -> fn(pixel_values, grid_thw, layout, perturbation, image_seeds) -> new pixel_values.
PERTURBATIONS: Registry[Callable[..., Tensor]] = Registry("perturbation")


@PERTURBATIONS.register("patch_blackening")
def patch_blackening(
    pixel_values: Tensor, grid_thw: Tensor, layout: PixelLayout, perturbation: Perturbation, image_seeds: list[int]
) -> Tensor:
    """Random patch blackening on the processor's patch grid (VPPO's and PAPO's augmentation).

    Each ``patch_size``-pixel cell of each image is blackened with probability ``prob``
    (one uniform draw per cell, row-major from the top-left, as the authors' loop over
    ``range(0, h, patch_size) x range(0, w, patch_size)``).

    Args:
        pixel_values: [R, C * temporal * p * p] the processor's rows.
        grid_thw: [I, 3] (t, h, w) in patches of each image.
        layout: the processor's layout (:class:`PixelLayout`).
        perturbation: its ``prob`` and ``patch_size``.
        image_seeds: one seed per image.

    Returns:
        [R, C * temporal * p * p] a perturbed copy.
    """
    p = layout.patch_size
    size = perturbation.patch_size or p
    if size % p:
        raise ValueError(f"patch_blackening: patch_size {size} is not a multiple of the processor's patch {p}")
    if len(image_seeds) != grid_thw.shape[0]:
        raise ValueError(f"patch_blackening: {len(image_seeds)} seeds for {grid_thw.shape[0]} images")
    cell = size // p
    black = layout.black_row(pixel_values.dtype, pixel_values.device)  # [D]
    keep = []
    for cells, (_, h, w), seed in zip(patch_grid_cells(grid_thw, layout.merge_size, cell), grid_thw.tolist(),
                                      image_seeds, strict=True):
        n_cells = math.ceil(h / cell) * math.ceil(w / cell)
        gen = torch.Generator().manual_seed(int(seed))
        dark = torch.rand(n_cells, generator=gen, dtype=torch.float64) < perturbation.prob  # [cells]
        keep.append(~dark[cells])  # [t h w]
    keep_rows = torch.cat(keep).to(pixel_values.device)[:, None]  # [R, 1]
    if keep_rows.shape[0] != pixel_values.shape[0]:
        raise ValueError(f"patch_blackening: grid_thw gives {keep_rows.shape[0]} rows, pixel_values has "
                         f"{pixel_values.shape[0]}")
    return torch.where(keep_rows, pixel_values, black)


def perturb_pixels(
    pixel_values: Tensor, grid_thw: Tensor, layout: PixelLayout, perturbation: Perturbation, image_seeds: list[int]
) -> Tensor:
    """Apply the registered perturbation ``perturbation.name``."""
    return PERTURBATIONS.get(perturbation.name)(pixel_values, grid_thw, layout, perturbation, image_seeds)


__all__ = ["PERTURBATIONS", "Perturbation", "PixelLayout", "mix_seed", "patch_blackening", "patch_grid_cells",
           "perturb_pixels"]
