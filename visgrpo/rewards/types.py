"""Types shared by the reward functions: the per-item protocol, its result, and head specs.

A reward function scores ONE completion against its sample::

    fn(completion: str, sample: Mapping, **kwargs) -> RewardValue | float | (float, reason)

``sample`` holds the dataset columns (``answer``, ``answer_type``, ``boxes``, ``width``,
``height``, ``id``, ...) plus ``family`` (``qwen2_vl`` | ``qwen2_5_vl`` | ``qwen3_vl``),
``resized_hw`` (``(h, w)`` per image after the processor's resize) and, in rollouts,
``response_length`` (tokens). A function that cannot score a malformed completion returns
``RewardValue(0.0, reason)``; the :class:`~visgrpo.rewards.heads.RewardHead` additionally
turns any exception into 0 with the exception as the reason.

Batch functions (TRL convention, ``fn(completions, samples, **kwargs) -> list``) are also
accepted by the head: mark them with :func:`batched` or name the first parameter
``completions``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class RewardValue(NamedTuple):
    """One reward: its value and, when it is not a plain success/failure, why."""

    value: float
    reason: str | None = None


class RewardFn(Protocol):
    """Per-item reward function protocol (see the module docstring)."""

    def __call__(
        self, completion: str, sample: Mapping[str, Any], **kwargs: Any
    ) -> RewardValue: ...


@dataclass
class RewardSpec:
    """One component of a reward head (typed so LightningCLI can parse it from YAML).

    Args:
        name: a registered name (``accuracy``, ``format``, ...; see
            ``REWARD_FUNCTIONS.names()``) or a ``package.module:function`` path.
        weight: multiplier of this component in the total.
        kwargs: keyword arguments passed to the function on every call.
        key: component name in the head's output (default: ``name``); needed to use the
            same function twice with different kwargs.
    """

    name: str
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


def batched(fn: Callable) -> Callable:
    """Mark ``fn(completions, samples, **kwargs) -> list`` as a batch reward function."""
    fn.__reward_batched__ = True
    return fn


def is_batched(fn: Callable) -> bool:
    """True if marked with :func:`batched` or the first parameter is named ``completions``."""
    if getattr(fn, "__reward_batched__", False):
        return True
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0].name == "completions"


def as_reward_value(out: Any) -> RewardValue:
    """Coerce a reward function's return value (RewardValue, number, bool, (value, reason), None).

    ``None`` (TRL: "not applicable") scores 0 with reason ``"not applicable"``; a non-finite
    number scores 0 with reason ``"non-finite reward"``.

    Raises:
        TypeError: for any other type (the head turns it into a 0 with this reason).
    """
    if isinstance(out, RewardValue):
        value, reason = out
    elif out is None:
        return RewardValue(0.0, "not applicable")
    elif isinstance(out, tuple) and len(out) == 2:
        value, reason = out
    elif isinstance(out, (bool, int, float)) or hasattr(out, "__float__"):
        value, reason = out, None
    else:
        raise TypeError(f"reward function returned {type(out).__name__}; expected a number")
    value = float(value)
    if not math.isfinite(value):
        return RewardValue(0.0, "non-finite reward")
    return RewardValue(value, None if reason is None else str(reason))
