"""Grounding boxes in each model family's coordinate convention (the inverse of
``visgrpo.rewards.grounding.to_original``) and the prompt line that asks for them.

* ``qwen2_5_vl``: absolute pixels of the image as the model sees it, i.e. after the
  processor's ``smart_resize`` to ``(h', w')``.
* ``qwen2_vl``, ``qwen3_vl``: relative coordinates on a 0-1000 scale of the image.

Data tools store boxes in original-image pixels; the grounding reward, the evaluation's
box scorer and the prompts below all go through ``to_original`` / :func:`from_original`,
so a box written by a model in its family's convention maps back to the same pixels
(tests/rewards/test_coords.py checks the round trip for each family).
"""

from __future__ import annotations

from collections.abc import Sequence

from visgrpo.rewards.grounding import RESIZED_PIXELS, model_scale

INSTRUCTIONS = {
    "qwen2_5_vl": "Output its bounding box as JSON "
    '{{"bbox_2d": [x1, y1, x2, y2]}} in absolute pixel coordinates of the image ({w}x{h}).',
    "qwen2_vl": "Output its bounding box as JSON "
    '{{"bbox_2d": [x1, y1, x2, y2]}} in relative coordinates from 0 to 1000.',
    "qwen3_vl": "Output its bounding box as JSON "
    '{{"bbox_2d": [x1, y1, x2, y2]}} in relative coordinates from 0 to 1000.',
}


def from_original(
    box: Sequence[float],
    family: str,
    size: tuple[float, float],
    resized_hw: tuple[int, int] | None = None,
) -> list[float]:
    """Convert ``[x0, y0, x1, y1]`` from original pixels to the family's model coordinates.

    Args:
        box: box in original-image pixels.
        family: ``qwen2_vl`` | ``qwen2_5_vl`` | ``qwen3_vl``.
        size: ``(W, H)`` of the original image.
        resized_hw: ``(h', w')`` after ``smart_resize`` (needed for ``qwen2_5_vl``).
    """
    sx, sy = model_scale(family, size, resized_hw)
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0 / sx, y0 / sy, x1 / sx, y1 / sy]


def grounding_instruction(family: str, resized_hw: tuple[int, int] | None = None) -> str:
    """The prompt line asking for a box in ``family``'s convention (Qwen2.5-VL: the size
    of the image as the model sees it, so the numbers it writes are in that frame).
    """
    if family not in INSTRUCTIONS:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(INSTRUCTIONS)}")
    h, w = resized_hw if resized_hw is not None else (0, 0)
    if family in RESIZED_PIXELS and resized_hw is None:
        raise ValueError(f"family {family!r} needs the resized image size (resized_hw)")
    return INSTRUCTIONS[family].format(w=w, h=h)
