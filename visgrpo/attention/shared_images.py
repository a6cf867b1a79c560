"""Encode each prompt's images once for all G responses of its group.

A rollout batch repeats every prompt's ``pixel_values`` for each of its G responses, so a
plain forward runs the vision tower G times on the same pixels. The vision tower is
deterministic (no dropout in the Qwen-VL towers), so encoding the images of one row per
group and handing the repeated features to the decoder through transformers'
``mm_encoder_outputs`` gives the same outputs and, by the chain rule, the same gradients
(the G uses of a feature sum into one backward through the tower).
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import Tensor


def supports_encoder_outputs(base) -> bool:
    """Whether the model's forward accepts precomputed vision features (transformers >= 5.x)."""
    return _accepts_encoder_outputs(type(base.model))


@functools.cache
def _accepts_encoder_outputs(model_cls: type) -> bool:
    return "mm_encoder_outputs" in inspect.signature(model_cls.forward).parameters


def _starts(counts: Tensor) -> list[int]:
    return (torch.cumsum(counts, 0) - counts).tolist()


def shared_image_plan(group_ids: Tensor, pixel_counts: Tensor, image_counts: Tensor):
    """Which rows to encode and how to lay their images out again for every row.

    Args:
        group_ids: [B] prompt group of each row (rows of a group share the prompt's images).
        pixel_counts: [B] pixel rows of each row's images.
        image_counts: [B] images of each row.

    Returns:
        ``(pixel_rows, grid_rows, image_index)`` or ``None`` when no images repeat:
        ``pixel_rows`` / ``grid_rows`` [long] index the batch's ``pixel_values`` /
        ``image_grid_thw`` rows of the encoded (first-of-group) rows; ``image_index`` [long]
        gives, for every image slot of the batch in order, its encoded image.
    """
    groups = group_ids.tolist()
    pc, ic = pixel_counts.cpu(), image_counts.cpu()
    first: dict[int, int] = {}
    for row, g in enumerate(groups):
        first.setdefault(g, row)
    if len(first) == len(groups):
        return None
    p_start, i_start = _starts(pc), _starts(ic)
    encoded = sorted(first.values())  # rows whose images are encoded
    enc_image_start, n = {}, 0
    pixel_rows, grid_rows = [], []
    for row in encoded:
        enc_image_start[row] = n
        n += int(ic[row])
        pixel_rows.append(torch.arange(p_start[row], p_start[row] + int(pc[row])))
        grid_rows.append(torch.arange(i_start[row], i_start[row] + int(ic[row])))
    image_index = []
    for g in groups:
        src = first[g]
        image_index.extend(range(enc_image_start[src], enc_image_start[src] + int(ic[src])))
    return torch.cat(pixel_rows), torch.cat(grid_rows), torch.tensor(image_index, dtype=torch.long)


def shared_image_outputs(base, pixel_values: Tensor, image_grid_thw: Tensor, plan) -> dict:
    """``mm_encoder_outputs`` for the whole batch from one encoding per group.

    Args:
        base: the ``*ForConditionalGeneration`` model.
        pixel_values: [R, D] the batch's pixel rows (repeated per response).
        image_grid_thw: [n_images, 3] the batch's grids (repeated per response).
        plan: :func:`shared_image_plan`'s result.
    """
    pixel_rows, grid_rows, image_index = plan
    dev = pixel_values.device
    feats = base.model.get_image_features(
        pixel_values.index_select(0, pixel_rows.to(dev)),
        image_grid_thw.index_select(0, grid_rows.to(image_grid_thw.device)),
        return_dict=True,
    )
    idx = image_index.tolist()
    feats.pooler_output = tuple(feats.pooler_output[j] for j in idx)  # one [n_j, D] per image slot
    deep = getattr(feats, "deepstack_features", None)  # Qwen3-VL: per layer, per image
    if deep is not None:
        feats.deepstack_features = [tuple(layer[j] for j in idx) for layer in deep]
    return {"image": feats}


__all__ = ["shared_image_outputs", "shared_image_plan", "supports_encoder_outputs"]
