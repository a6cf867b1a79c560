"""Locate the visual tokens of a batch and map each to its cell on the merged grid.

Qwen-VL processors expand each image into ``t * (h/m) * (w/m)`` copies of
``<|image_pad|>`` (``image_grid_thw = (t, h, w)`` in patches, ``m`` the spatial merge
size), in row-major order over the merged grid (docs/methods.md, Evidence-to-token mapping). ``image_grid_thw``
lists the images of the whole batch in batch order: the first sample's images in prompt
order, then the second sample's, and so on (the processor and the models' rope index
consume it the same way). Per sample, all its images' tokens are concatenated in prompt
order into the N axis, the layout of the evidence fields (``evidence_mask`` etc.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ImageTokens:
    """Image-token layout of a batch (padded to N = max tokens per sample).

    Attributes:
        positions: [B, N] long sequence position of each image token (0 at padding).
        mask: [B, N] bool valid slots.
        image_index: [B, N] long which image of the sample (0-based, prompt order; 0 at pad).
        row: [B, N] long row on that image's merged grid (0 at pad).
        col: [B, N] long column on that image's merged grid (0 at pad).
        frame: [B, N] long temporal index (0 for still images).
        counts: [B] long image tokens per sample.
        images_per_sample: [B] long number of images per sample.
        grid_hw: [n_images, 2] long merged grid (rows, cols) of each image, batch order.
    """

    positions: Tensor
    mask: Tensor
    image_index: Tensor
    row: Tensor
    col: Tensor
    frame: Tensor
    counts: Tensor
    images_per_sample: Tensor
    grid_hw: Tensor


def locate_image_tokens(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    image_token_id: int,
    image_grid_thw: Tensor | None,
    merge_size: int,
) -> ImageTokens:
    """Find every image token of a (left- or right-padded) batch and its grid cell.

    Args:
        input_ids: [B, L] token ids.
        attention_mask: [B, L] (1 = real token) or None; masked positions are never image
            tokens.
        image_token_id: id of ``<|image_pad|>``.
        image_grid_thw: [n_images, 3] (t, h, w) in patches, images in batch order; None or
            empty when the batch has no image.
        merge_size: spatial merge size m (2 for the Qwen-VL families).

    Returns:
        :class:`ImageTokens`.

    Raises:
        ValueError: when the image-token counts do not match the grids (naming the sample),
            or an image's tokens are not one contiguous run.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    B, L = input_ids.shape
    dev = input_ids.device
    is_img = input_ids == image_token_id  # [B, L]
    if attention_mask is not None:
        is_img &= attention_mask.bool()
    counts = is_img.sum(1)  # [B]
    if image_grid_thw is None:
        image_grid_thw = torch.zeros(0, 3, dtype=torch.long, device=dev)
    grid = image_grid_thw.to(dev).long()  # [n_images, 3]
    if grid.dim() != 2 or grid.shape[1] != 3:
        raise ValueError(f"image_grid_thw must be [n_images, 3], got {tuple(grid.shape)}")
    if bool((grid[:, 1:] % merge_size != 0).any()):
        raise ValueError(f"image_grid_thw has h or w not divisible by merge_size {merge_size}")
    gh, gw = grid[:, 1] // merge_size, grid[:, 2] // merge_size  # [n_images]
    per_image = grid[:, 0] * gh * gw  # [n_images] tokens of each image
    img_end = per_image.cumsum(0)  # [n_images]
    img_start = img_end - per_image
    smp_end = counts.cumsum(0)  # [B]
    smp_start = smp_end - counts
    total_grid, total_ids = int(per_image.sum()), int(counts.sum())
    if total_grid != total_ids:
        raise ValueError(
            f"input_ids hold {total_ids} image tokens (per sample {counts.tolist()}) but "
            f"image_grid_thw implies {total_grid} (per image {per_image.tolist()}, merge {merge_size})"
        )
    # A sample boundary must fall on an image boundary (images are never split across samples).
    bounds = torch.cat([img_start.new_zeros(1), img_end])  # [n_images + 1]
    for b in range(B):
        if counts[b] > 0 and not bool(
            (bounds == smp_start[b]).any() & (bounds == smp_end[b]).any()
        ):
            raise ValueError(
                f"sample {b}: its {int(counts[b])} image tokens (tokens {int(smp_start[b])}.."
                f"{int(smp_end[b])} of the batch) do not make whole images of image_grid_thw "
                f"(per image {per_image.tolist()})"
            )

    N = int(counts.max()) if B else 0
    key = torch.where(is_img, torch.arange(L, device=dev), torch.full_like(input_ids, L))
    positions = key.sort(dim=1, stable=True).values[:, :N]  # [B, N] ascending image positions
    mask = torch.arange(N, device=dev)[None, :] < counts[:, None]  # [B, N]
    positions = torch.where(mask, positions, torch.zeros_like(positions))
    g = torch.where(mask, smp_start[:, None] + torch.arange(N, device=dev), 0)  # [B, N] batch index
    img = torch.searchsorted(img_end, g, right=True).clamp(max=max(len(per_image) - 1, 0))
    if len(per_image) == 0:
        img = torch.zeros_like(g)
        k = torch.zeros_like(g)
        w_ = torch.ones_like(g)
        hw = torch.ones_like(g)
    else:
        k = g - img_start[img]  # [B, N] index within its image
        w_, hw = gw[img], (gh * gw)[img]
    first_img = torch.searchsorted(img_end, smp_start, right=True)  # [B]
    last_img = torch.searchsorted(img_end, smp_end, right=True)  # [B] (exclusive)
    images_per_sample = torch.where(counts > 0, last_img - first_img, 0)
    zero = torch.zeros_like(positions)
    image_index = torch.where(mask, img - first_img[:, None], zero)
    frame = torch.where(mask, k // hw, zero)
    row = torch.where(mask, (k % hw) // w_, zero)
    col = torch.where(mask, k % w_, zero)

    # Each image's tokens must be one contiguous run of positions.
    same = (image_index[:, 1:] == image_index[:, :-1]) & mask[:, 1:]  # [B, N-1]
    gap = (positions[:, 1:] - positions[:, :-1]) != 1
    bad = (same & gap).nonzero()
    if len(bad):
        b, n = int(bad[0, 0]), int(bad[0, 1])
        raise ValueError(
            f"sample {b}: image {int(image_index[b, n])} tokens are not contiguous "
            f"(positions {int(positions[b, n])} then {int(positions[b, n + 1])})"
        )
    return ImageTokens(
        positions=positions,
        mask=mask,
        image_index=image_index,
        row=row,
        col=col,
        frame=frame,
        counts=counts,
        images_per_sample=images_per_sample,
        grid_hw=torch.stack([gh, gw], 1),
    )
