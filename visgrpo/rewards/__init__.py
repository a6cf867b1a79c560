"""Verifiable rewards: accuracy (choice / math-verify / exact), format, grounding IoU, length,
and the ``RewardHead`` combining them (docs/architecture.md, "Layers").

``RewardHead`` / ``RewardOutput`` (which need torch) are imported lazily so that the
math-verification worker processes, which import this package, stay light.
"""

from visgrpo.rewards._mathpool import MathPool, default_pool
from visgrpo.rewards.accuracy import (
    accuracy,
    choice_accuracy,
    exact_accuracy,
    extract_choice,
    math_accuracy,
)
from visgrpo.rewards.format import format_reward
from visgrpo.rewards.grounding import box_iou, gold_box, grounding_iou, parse_box, to_original
from visgrpo.rewards.length import length_penalty, overlong, overlong_value
from visgrpo.rewards.parsing import answer_text, extract_tag, normalise_text
from visgrpo.rewards.registry import REWARD_FUNCTIONS, resolve_reward
from visgrpo.rewards.types import (
    RewardFn,
    RewardSpec,
    RewardValue,
    as_reward_value,
    batched,
    is_batched,
)

__all__ = [
    "REWARD_FUNCTIONS",
    "MathPool",
    "RewardFn",
    "RewardHead",
    "RewardOutput",
    "RewardSpec",
    "RewardValue",
    "accuracy",
    "answer_text",
    "as_reward_value",
    "batched",
    "box_iou",
    "choice_accuracy",
    "default_pool",
    "exact_accuracy",
    "extract_choice",
    "extract_tag",
    "format_reward",
    "gold_box",
    "grounding_iou",
    "is_batched",
    "length_penalty",
    "math_accuracy",
    "normalise_text",
    "overlong",
    "overlong_value",
    "parse_box",
    "resolve_reward",
    "to_original",
]


def __getattr__(name: str):
    if name in ("RewardHead", "RewardOutput"):
        from visgrpo.rewards import heads

        return getattr(heads, name)
    raise AttributeError(f"module 'visgrpo.rewards' has no attribute {name!r}")
