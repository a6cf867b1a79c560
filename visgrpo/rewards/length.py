"""Length rewards: DAPO overlong shaping (arXiv 2503.14476, eq. 13) and a linear length penalty.

DAPO soft overlong punishment with maximum length ``L_max`` and cache ``L_c``
(docs/methods.md, Base objectives)::

    R_length(y) = 0                              if |y| <= L_max - L_c
                = ((L_max - L_c) - |y|) / L_c    if L_max - L_c < |y| <= L_max
                = -1                             if |y| > L_max

``|y|`` is the response length in tokens: the ``length`` kwarg, else the sample's
``response_length`` (set by the rollout assembly). The same shaping as a tensor function
for whole batches is ``visgrpo.objectives.overlong_penalty``; this per-item form lets a
reward head include it as a logged component.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visgrpo.rewards.types import RewardValue


def _length(sample: Mapping[str, Any] | None, length: int | None) -> int:
    if length is not None:
        return int(length)
    if sample is None or sample.get("response_length") is None:
        rid = None if sample is None else sample.get("id")
        raise ValueError(f"record {rid!r}: field 'response_length' is missing (or pass length=)")
    return int(sample["response_length"])


def overlong_value(length: int, max_length: int, cache_length: int) -> float:
    """DAPO overlong shaping of one response length (module docstring)."""
    if not 0 < cache_length <= max_length:
        raise ValueError(f"need 0 < cache_length <= max_length, got {cache_length}, {max_length}")
    start = max_length - cache_length
    if length <= start:
        return 0.0
    if length <= max_length:
        return (start - length) / cache_length
    return -1.0


def overlong(
    completion: str,
    sample: Mapping[str, Any] | None = None,
    *,
    max_length: int = 1024,
    cache_length: int = 256,
    length: int | None = None,
) -> RewardValue:
    """DAPO overlong shaping in [-1, 0] (module docstring). ``completion`` is unused."""
    return RewardValue(overlong_value(_length(sample, length), int(max_length), int(cache_length)))


def length_penalty(
    completion: str,
    sample: Mapping[str, Any] | None = None,
    *,
    target: int = 512,
    scale: float = 1.0,
    max_length: int | None = None,
    length: int | None = None,
) -> RewardValue:
    """Linear penalty for tokens beyond ``target``: ``-scale * max(0, |y| - target) / span``.

    ``span`` is ``max_length - target`` when ``max_length`` is given (the penalty then reaches
    ``-scale`` at ``max_length`` and stays there), else ``target``.
    """
    n = _length(sample, length)
    span = (int(max_length) - int(target)) if max_length is not None else int(target)
    if span <= 0:
        raise ValueError(
            f"length_penalty needs max_length > target > 0, got {max_length}, {target}"
        )
    over = max(0, n - int(target))
    return RewardValue(
        -float(scale) * min(over / span, 1.0 if max_length is not None else float("inf"))
    )
