"""Registry of reward functions and resolution of user rewards by ``package.module:function``.

Built-in names: ``accuracy`` (dispatch on ``answer_type``), ``choice_accuracy``,
``math_accuracy``, ``exact_accuracy``, ``format``, ``grounding_iou``, ``overlong``,
``length_penalty``. Anything else is a ``module:function`` path to a per-item function
``fn(completion, sample, **kwargs)`` or a batch function (see ``types.is_batched``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from visgrpo.registry import Registry
from visgrpo.rewards.accuracy import accuracy, choice_accuracy, exact_accuracy, math_accuracy
from visgrpo.rewards.format import format_reward
from visgrpo.rewards.grounding import grounding_iou
from visgrpo.rewards.length import length_penalty, overlong

REWARD_FUNCTIONS: Registry[Callable] = Registry("reward function")
for _name, _fn in {
    "accuracy": accuracy,
    "choice_accuracy": choice_accuracy,
    "math_accuracy": math_accuracy,
    "exact_accuracy": exact_accuracy,
    "format": format_reward,
    "grounding_iou": grounding_iou,
    "overlong": overlong,
    "length_penalty": length_penalty,
}.items():
    REWARD_FUNCTIONS.add(_name, _fn)


def resolve_reward(name_or_path: str) -> Callable:
    """The reward function registered as ``name_or_path``, or imported from ``module:attr``.

    Raises:
        KeyError: unknown registered name (lists the valid ones).
        ValueError: malformed path, module not importable, attribute missing or not callable.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"reward name must be a non-empty string, got {name_or_path!r}")
    if ":" not in name_or_path:
        return REWARD_FUNCTIONS.get(name_or_path)
    module_name, _, attr = name_or_path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"reward path {name_or_path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"reward path {name_or_path!r}: cannot import module {module_name!r} ({exc})"
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(
                f"reward path {name_or_path!r}: {module_name!r} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(
            f"reward path {name_or_path!r}: {attr!r} is a {type(obj).__name__}, not callable"
        )
    return obj
