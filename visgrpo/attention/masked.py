"""The masked-image signal: log-probs of the response on a perturbed copy of the image.

VPPO and PAPO (docs/methods.md) compare the policy's token log-probs on the real image with
those on an image whose patches are randomly blackened. :func:`masked_logprobs` builds the
perturbed ``pixel_values`` (:mod:`visgrpo.data.perturb`, on the processor's own patch grid)
and runs one more teacher-forced forward WITHOUT grad (both authors' codes compute these
log-probs once per step under ``no_grad``, with the rollout policy): the cost is one extra
forward (no backward) per forward that requests it.

Seeds: response ``b`` of the batch draws its masks from ``mix_seed(seed, group_ids[b],
ordinal of b in its group)`` (ordinal 0 for every row with ``per_response=False``: one mask
per prompt, and the masked forward then shares each group's image encoding and prompt
pass, :mod:`visgrpo.attention.shared_prefix`) and its
``i``-th image from ``mix_seed(that, i)``; groups are whole inside micro-batches, so the
masks do not depend on how the batch is cut, and the training module's per-step ``seed``
makes a resumed run draw the same masks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from visgrpo.data.perturb import Perturbation, PixelLayout, mix_seed, perturb_pixels
from visgrpo.models.families import FAMILIES


def pixel_layout(base, image_mean=None, image_std=None) -> PixelLayout:
    """The processor layout of ``base`` (a ``*ForConditionalGeneration``): patch, merge and
    temporal sizes from its vision config; ``image_mean`` / ``image_std`` given (the loaded
    processor's) or those of the model's family.
    """
    vc = base.config.vision_config
    if image_mean is None or image_std is None:
        fam = next((f for f in FAMILIES.values() if f.model_class == type(base).__name__), None)
        if fam is None:
            raise ValueError(f"masked-image signal: no image_mean/image_std given and {type(base).__name__} "
                             f"is not a known family's model class")
        image_mean, image_std = fam.image_mean, fam.image_std
    return PixelLayout(
        patch_size=int(vc.patch_size),
        merge_size=int(vc.spatial_merge_size),
        temporal_patch_size=int(getattr(vc, "temporal_patch_size", 2)),
        image_mean=tuple(float(v) for v in image_mean),
        image_std=tuple(float(v) for v in image_std),
    )


def row_seeds(group_ids: Tensor, seed: int, per_response: bool = True) -> list[int]:
    """[B] seeds: ``mix_seed(seed, group id, ordinal of the row within its group)`` (ordinal 0
    for all rows when not ``per_response``).
    """
    g = group_ids.tolist()
    seen: dict[int, int] = {}
    out = []
    for gid in g:
        k = seen.get(gid, 0) if per_response else 0
        seen[gid] = k + 1
        out.append(mix_seed(seed, gid, k))
    return out


def image_seeds(rows: list[int], image_counts: list[int]) -> list[int]:
    """One seed per image, in ``pixel_values`` order (row by row)."""
    return [mix_seed(s, i) for s, n in zip(rows, image_counts, strict=True) for i in range(int(n))]


def masked_logprobs(
    forward: Callable[[dict, bool], Tensor],
    batch: dict,
    group_ids: Tensor | None,
    image_counts: Tensor | None,
    perturbation: Perturbation,
    layout: PixelLayout,
    seed: int,
) -> Tensor:
    """[B, T] log-probs of the response tokens with perturbed images: detached, unless
    ``perturbation.with_grad`` and grad is enabled.

    Args:
        forward: runs the teacher-forced forward of a batch dict (the flag: whether the rows
            of a group may share their image encoding) and returns its ``logp``.
        batch: the batch dict of the real forward (``pixel_values``, ``image_grid_thw``).
        group_ids: [B] prompt group of each row (None: every row its own group).
        image_counts: [B] images of each row (None: one per row).
        perturbation: what to apply (:class:`~visgrpo.data.perturb.Perturbation`).
        layout: the processor's layout.
        seed: the step's seed.
    """
    pixels, grid = batch.get("pixel_values"), batch.get("image_grid_thw")
    if pixels is None or grid is None:
        raise ValueError("masked-image signal: the batch has no pixel_values / image_grid_thw")
    B = batch["input_ids"].shape[0]
    gids = torch.arange(B) if group_ids is None else group_ids.cpu()
    counts = [1] * B if image_counts is None else image_counts.tolist()
    if sum(counts) != grid.shape[0]:
        raise ValueError(f"masked-image signal: image_counts sum to {sum(counts)}, image_grid_thw has "
                         f"{grid.shape[0]} images (pass image_counts with the batch)")
    seeds = image_seeds(row_seeds(gids, seed, perturbation.per_response), counts)
    masked = dict(batch)
    masked["pixel_values"] = perturb_pixels(pixels, grid.cpu(), layout, perturbation, seeds)
    share = not perturbation.per_response and group_ids is not None
    if perturbation.with_grad and torch.is_grad_enabled():  # PAPO's recomputed log-probs: keep the graph
        return forward(masked, share)
    with torch.no_grad():
        return forward(masked, share).detach()


__all__ = ["image_seeds", "masked_logprobs", "pixel_layout", "row_seeds"]
