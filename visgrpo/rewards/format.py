"""Format reward: ``<think>...</think><answer>...</answer>`` (DeepSeek-R1 style, arXiv 2501.12948).

Two built-in modes, both requiring exactly one think block followed by exactly one answer
block, each with non-blank content, and nothing else:

* ``strict``: the completion starts with ``<think>`` and ends with ``</answer>`` (one
  optional trailing newline); between ``</think>`` and ``<answer>`` at most one newline.
* ``lenient``: any whitespace is allowed before, between and after the blocks, and tag
  names are matched case-insensitively.

A custom ``pattern`` (a regular expression matched against the whole completion with
``re.DOTALL``) replaces both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from visgrpo.rewards.types import RewardValue


@lru_cache(maxsize=64)
def _compile(think: str, answer: str, strict: bool) -> re.Pattern:
    t, a = re.escape(think), re.escape(answer)
    if strict:
        return re.compile(rf"<{t}>(.*?)</{t}>\n?<{a}>(.*?)</{a}>\n?", re.DOTALL)
    return re.compile(rf"\s*<{t}>(.*?)</{t}>\s*<{a}>(.*?)</{a}>\s*", re.DOTALL | re.IGNORECASE)


@lru_cache(maxsize=64)
def _custom(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


def format_reward(
    completion: str,
    sample: Mapping[str, Any] | None = None,
    *,
    think_tag: str = "think",
    answer_tag: str = "answer",
    strict: bool = True,
    pattern: str | None = None,
    max_chars: int = 200_000,
) -> RewardValue:
    """1 if ``completion`` has the think/answer format, else 0 with the reason.

    Args:
        completion: model output. sample: unused (protocol).
        think_tag, answer_tag: tag names.
        strict: strict or lenient whitespace (module docstring).
        pattern: custom full-match regular expression (overrides the tags and mode).
        max_chars: longer completions score 0 (bounds regex time).
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be str, got {type(completion).__name__}")
    if len(completion) > max_chars:
        return RewardValue(0.0, f"completion longer than {max_chars} characters")
    if pattern is not None:
        ok = _custom(pattern).fullmatch(completion) is not None
        return RewardValue(float(ok), None if ok else "does not match the format pattern")
    # Counting first (linear) leaves the regex one candidate per tag: no backtracking blow-up.
    text = completion if strict else completion.lower()
    for tag in (think_tag, answer_tag):
        tag = tag if strict else tag.lower()
        if text.count(f"<{tag}>") != 1 or text.count(f"</{tag}>") != 1:
            return RewardValue(0.0, f"<{tag}> and </{tag}> must occur exactly once")
    m = _compile(think_tag, answer_tag, bool(strict)).fullmatch(completion)
    if m is None:
        return RewardValue(0.0, "not <think>...</think><answer>...</answer>")
    if not m.group(1).strip() or not m.group(2).strip():
        return RewardValue(0.0, "empty think or answer block")
    return RewardValue(1.0)
