"""Grounding reward: IoU between the box in the answer and the gold box.

Coordinate systems of the models' answers (docs/methods.md, Evidence-to-token mapping):

* ``qwen2_5_vl``: absolute pixels of the RESIZED image (the processor's ``smart_resize``
  output ``(h', w')``, given per image in ``sample["resized_hw"]``): ``x * W / w'``.
* ``qwen2_vl``: relative coordinates on a 0-1000 scale: ``x * W / 1000``.
* ``qwen3_vl``: relative 0-1000 as well. Source: the official Qwen3-VL cookbook
  (github.com/QwenLM/Qwen3-VL, ``cookbooks/2d_grounding.ipynb``): "Qwen3-VL's default
  coordinate system has been changed from the absolute coordinates used in Qwen2.5-VL to
  relative coordinates ranging from 0 to 1000", and its plotting code maps
  ``bbox_2d[0] / 1000 * width``; the Qwen team confirms it in QwenLM/Qwen3-VL issue #1427.

Gold boxes are in pixels of the ORIGINAL image (the dataset schema), so the predicted
box is converted to original pixels, clipped to the image, and compared there.

Accepted answer forms: ``{"bbox_2d": [x0, y0, x1, y1], ...}`` (Qwen2.5-VL / Qwen3-VL JSON,
also inside a list or a ```json block), ``(x0,y0),(x1,y1)`` (Qwen2-VL
``<|box_start|>...<|box_end|>``), and ``[x0, y0, x1, y1]``. The first box found is used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from visgrpo.rewards.parsing import answer_text
from visgrpo.rewards.types import RewardValue

_NUM = r"(-?\d{1,9}(?:\.\d{1,9})?)"  # bounded digit runs: no huge numbers, linear matching
_SEP = r"\s*,\s*"
_PATTERNS = [
    re.compile(r'"?bbox_2d"?\s*:\s*\[\s*' + _SEP.join([_NUM] * 4) + r"\s*\]"),
    re.compile(
        r"\(\s*" + _NUM + _SEP + _NUM + r"\s*\)" + _SEP + r"\(\s*" + _NUM + _SEP + _NUM + r"\s*\)"
    ),
    re.compile(r"\[\s*" + _SEP.join([_NUM] * 4) + r"\s*\]"),
]
RELATIVE_1000 = ("qwen2_vl", "qwen3_vl")
RESIZED_PIXELS = ("qwen2_5_vl",)


def parse_box(text: str) -> list[float] | None:
    """The first box ``[x0, y0, x1, y1]`` written in ``text`` (model coordinates), or ``None``."""
    for pat in _PATTERNS:
        m = pat.search(text)
        if m:
            box = [float(v) for v in m.groups()]
            if all(math.isfinite(v) for v in box):
                return box
    return None


def _image_index(sample: Mapping[str, Any], gold_index: int) -> int:
    which = sample.get("box_image")
    return int(which[gold_index]) if which is not None and len(which) > gold_index else 0


def _size(sample: Mapping[str, Any], image: int) -> tuple[float, float]:
    """``(W, H)`` of the original image ``image`` (list-valued for multi-image samples)."""
    w, h = sample.get("width"), sample.get("height")
    if w is None or h is None:
        raise ValueError(f"record {sample.get('id')!r}: fields 'width'/'height' are missing")
    if isinstance(w, Sequence):
        w, h = w[image], h[image]
    return float(w), float(h)


def model_scale(family: str, size: tuple[float, float], resized_hw: tuple[int, int] | None) -> tuple[float, float]:
    """``(sx, sy)`` such that a model coordinate times ``s`` is an original-image pixel."""
    W, H = size
    if family in RELATIVE_1000:
        return W / 1000.0, H / 1000.0
    if family in RESIZED_PIXELS:
        if resized_hw is None:
            raise ValueError(f"family {family!r} needs the resized image size (resized_hw)")
        rh, rw = resized_hw
        return W / float(rw), H / float(rh)
    raise ValueError(f"unknown family {family!r}; expected one of qwen2_vl, qwen2_5_vl, qwen3_vl")


def to_original(
    box: Sequence[float],
    family: str,
    size: tuple[float, float],
    resized_hw: tuple[int, int] | None = None,
) -> list[float]:
    """Convert a box from the model's coordinate system to original-image pixels.

    Args:
        box: ``[x0, y0, x1, y1]`` as the model wrote it.
        family: ``qwen2_vl`` | ``qwen2_5_vl`` | ``qwen3_vl`` (module docstring).
        size: ``(W, H)`` of the original image.
        resized_hw: ``(h', w')`` after the processor's resize (needed for ``qwen2_5_vl``).

    Returns:
        ``[x0, y0, x1, y1]`` in original pixels, corners ordered, clipped to the image.
    """
    W, H = size
    sx, sy = model_scale(family, size, resized_hw)
    x0, y0, x1, y1 = (float(v) for v in box)
    xs = sorted((min(max(x0 * sx, 0.0), W), min(max(x1 * sx, 0.0), W)))
    ys = sorted((min(max(y0 * sy, 0.0), H), min(max(y1 * sy, 0.0), H)))
    return [xs[0], ys[0], xs[1], ys[1]]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 when the union is empty).

    Equal to ``torchvision.ops.box_iou`` (tested against it); kept by hand because one pair per
    response is scored: 5 us a call here, 170 us through tensors.
    """
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def gold_box(sample: Mapping[str, Any], gold_index: int = 0) -> list[float]:
    """Gold box in original pixels: ``answer`` if it is a box, else ``boxes[gold_index]``."""
    ans = sample.get("answer")
    if isinstance(ans, (list, tuple)) and len(ans) == 4:
        return [float(v) for v in ans]
    if isinstance(ans, str):
        box = parse_box(ans)
        if box is not None:
            return box
    boxes = sample.get("boxes")
    if not boxes or len(boxes) <= gold_index:
        raise ValueError(
            f"record {sample.get('id')!r}: no gold box (field 'answer' is not a box and "
            f"'boxes' has no entry {gold_index})"
        )
    return [float(v) for v in boxes[gold_index]]


def grounding_iou(
    completion: str,
    sample: Mapping[str, Any],
    *,
    answer_tag: str | None = "answer",
    mode: str = "iou",
    threshold: float = 0.5,
    gold_index: int = 0,
    max_chars: int = 20_000,
) -> RewardValue:
    """IoU of the predicted box (converted to original pixels) with the gold box.

    Args:
        completion: model output; the box is read from the ``<answer>`` tag if present.
        sample: needs ``family``, ``width``, ``height``, ``resized_hw`` (Qwen2.5-VL), and a
            gold box (``answer`` or ``boxes``; ``box_image`` picks the image if several).
        mode: ``"iou"`` (the IoU in [0, 1]) or ``"threshold"`` (1 if IoU >= ``threshold``).
        gold_index: which of ``boxes`` is the gold one when ``answer`` is not a box.
        max_chars: longer answers are searched in their last ``max_chars`` characters.
    """
    if mode not in ("iou", "threshold"):
        raise ValueError(f"grounding mode must be 'iou' or 'threshold', got {mode!r}")
    family = sample.get("family")
    if family is None:
        raise ValueError(f"record {sample.get('id')!r}: field 'family' is missing")
    gold = gold_box(sample, gold_index)
    image = _image_index(sample, gold_index)
    text, _ = answer_text(completion, answer_tag)
    box = parse_box(text[-max_chars:])
    if box is None:
        return RewardValue(0.0, "no box found")
    resized = sample.get("resized_hw")
    rhw = tuple(resized[image]) if resized else None
    pred = to_original(box, family, _size(sample, image), rhw)
    iou = box_iou(pred, gold)
    if mode == "threshold":
        return RewardValue(float(iou >= threshold), None if iou >= threshold else f"IoU {iou:.3f}")
    return RewardValue(iou)
