"""Format reward (strict / lenient / custom) and length rewards (DAPO overlong, penalty)."""

from __future__ import annotations

import pytest
import torch

from visgrpo.objectives import overlong_penalty
from visgrpo.rewards import format_reward, length_penalty, overlong, overlong_value

GOOD = "<think>a</think><answer>b</answer>"


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        (GOOD, 1, 1),
        ("<think>\nreason\n</think>\n<answer>\nB\n</answer>\n", 1, 1),  # one newline between/after
        (" <think>a</think>\n\n<answer>b</answer> ", 0, 1),  # extra whitespace: lenient only
        ("<THINK>a</THINK><ANSWER>b</ANSWER>", 0, 1),  # tag case: lenient only
        ("<think>a</think><answer></answer>", 0, 0),  # empty answer
        ("<think> </think><answer>b</answer>", 0, 0),  # blank think
        ("<think>a<think>b</think><answer>c</answer>", 0, 0),  # two openers
        ("x<think>a</think><answer>b</answer>", 0, 0),  # text before
        ("<think>a</think>text<answer>b</answer>", 0, 0),  # text between
        ("<answer>b</answer><think>a</think>", 0, 0),  # wrong order
        ("just an answer", 0, 0),
    ],
)
def test_format_strict_and_lenient(text, strict, lenient):
    assert format_reward(text, {}, strict=True).value == strict
    assert format_reward(text, {}, strict=False).value == lenient


def test_format_custom_tags_pattern_and_reasons():
    assert (
        format_reward(
            "<reasoning>r</reasoning><final>7</final>",
            {},
            think_tag="reasoning",
            answer_tag="final",
        ).value
        == 1
    )
    assert format_reward(GOOD, {}, pattern=r"<answer>.*</answer>") == (
        0.0,
        "does not match the format pattern",
    )
    assert format_reward("<answer>7</answer>", {}, pattern=r"<answer>.*</answer>").value == 1
    assert format_reward("x", {}).reason == "<think> and </think> must occur exactly once"
    assert format_reward(GOOD, {}, max_chars=10).reason == "completion longer than 10 characters"
    # many closing tags: rejected by counting, in linear time
    assert format_reward("<think>" + "</think>" * 50_000, {}).value == 0


# DAPO overlong with L_max = 20, L_c = 5: zero up to 15, then (15 - |y|) / 5, then -1.
@pytest.mark.parametrize(
    ("n", "expected"), [(10, 0.0), (15, 0.0), (16, -0.2), (17, -0.4), (20, -1.0), (21, -1.0)]
)
def test_overlong_hand_values(n, expected):
    assert overlong_value(n, 20, 5) == pytest.approx(expected)
    assert overlong(
        "", {"response_length": n}, max_length=20, cache_length=5
    ).value == pytest.approx(expected)
    assert overlong("", {}, max_length=20, cache_length=5, length=n).value == pytest.approx(
        expected
    )


def test_overlong_matches_objectives_tensor_version():
    lengths = list(range(0, 30))
    ours = [overlong_value(n, 20, 5) for n in lengths]
    ref = overlong_penalty(torch.tensor(lengths), 20, 5).tolist()
    assert ours == pytest.approx(ref)


def test_overlong_errors():
    with pytest.raises(ValueError, match="record 'r7'.*response_length"):
        overlong("", {"id": "r7"})
    with pytest.raises(ValueError, match="cache_length"):
        overlong_value(3, 10, 0)


def test_length_penalty_hand_values():
    # target 10, max 20: span 10; n = 15 -> -5/10 = -0.5; n = 25 -> capped at -1; scale 2 doubles
    assert length_penalty(
        "", {"response_length": 15}, target=10, max_length=20
    ).value == pytest.approx(-0.5)
    assert length_penalty(
        "", {"response_length": 25}, target=10, max_length=20
    ).value == pytest.approx(-1.0)
    assert length_penalty(
        "", {}, target=10, max_length=20, scale=2.0, length=15
    ).value == pytest.approx(-1.0)
    # no max: span = target = 10; n = 30 -> -20/10 = -2 (uncapped); n <= target -> 0
    assert length_penalty("", {}, target=10, length=30).value == pytest.approx(-2.0)
    assert length_penalty("", {}, target=10, length=10).value == 0.0
    with pytest.raises(ValueError, match="max_length > target"):
        length_penalty("", {}, target=10, max_length=5, length=1)
