"""Scorers against hand-made answers."""

from __future__ import annotations

import pytest

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import gold_letters, numbers_match, parse_number, score


def item(scorer, answer, **meta):
    return EvalItem("q1", [], "question", answer, scorer, "c", meta)


@pytest.mark.parametrize("text, expected", [
    ("The answer is (B)", 1.0), ("<think>A or B</think><answer>B</answer>", 1.0),
    ("\\boxed{B}", 1.0), ("B. red", 1.0), ("The answer is (A)", 0.0), ("no idea", 0.0),
    ("<answer>red</answer>", 1.0),  # the option text itself
    ("<answer>green</answer>", 0.0),
])
def test_choice(text, expected):
    assert score(text, item("choice", "B", options=["blue", "red", "green"])) == expected


def test_choice_several_letters_need_the_same_set():
    it = item("choice", "B, D")
    assert gold_letters("B, D") == {"B", "D"}
    assert score("<answer>D, B</answer>", it) == 1.0
    assert score("<answer>B and D</answer>", it) == 1.0
    assert score("<answer>B</answer>", it) == 0.0
    assert score("<answer>B, C, D</answer>", it) == 0.0


def test_choice_gold_must_be_a_letter():
    with pytest.raises(ValueError, match="record 'q1': answer 'red' is not an option letter"):
        score("B", item("choice", "red"))


def test_number_precision_and_tolerance():
    assert parse_number("so x = 1,000.") == 1000.0
    assert parse_number("\\boxed{3.5} and then 7") == 3.5
    assert score("<answer>1.23</answer>", item("number", "1.2", precision=1.0)) == 1.0
    assert score("<answer>1.26</answer>", item("number", "1.2", precision=1.0)) == 0.0
    assert score("<answer>1.26</answer>", item("number", "1.2", precision=float("nan"))) == 0.0
    assert score("It is 1005 g", item("number", "1000")) == 1.0  # relative 1e-2
    assert score("It is 1011 g", item("number", "1000")) == 0.0
    assert score("nothing", item("number", "3")) == 0.0
    assert numbers_match(0.0, 0.0) and not numbers_match(0.001, 0.0)


def test_math_verify_equivalence():
    assert score("<answer>0.5</answer>", item("math", "\\frac{1}{2}")) == 1.0
    assert score("<answer>3\\sqrt{2}</answer>", item("math", "3\\sqrt{2}")) == 1.0
    assert score("<answer>__import__('os')</answer>", item("math", "2")) == 0.0


def test_yes_no():
    assert score("Yes, there is a dog.", item("yesno", "yes")) == 1.0
    assert score("<answer>No</answer>", item("yesno", "yes")) == 0.0
    assert score("I cannot tell", item("yesno", "no")) == 0.0
    with pytest.raises(ValueError, match="not yes/no"):
        score("yes", item("yesno", "maybe"))


@pytest.mark.parametrize("family, text", [
    ("qwen2_5_vl", '{"bbox_2d": [10, 10, 50, 40]}'),  # resized pixels (image resized x2)
    ("qwen3_vl", '{"bbox_2d": [100, 125, 500, 500]}'),  # 0-1000 of a 50x40 image
    ("qwen2_vl", "(100,125),(500,500)"),
])
def test_box_iou_in_the_family_convention(family, text):
    meta = {"family": family, "width": 50, "height": 40, "resized_hw": [(80, 100)]}
    assert score(text, item("box", [5.0, 5.0, 25.0, 20.0], **meta)) == 1.0
    assert score(text, item("box", [25.0, 20.0, 50.0, 40.0], **meta)) == 0.0


def test_unknown_scorer():
    with pytest.raises(ValueError, match="unknown scorer 'judge'"):
        score("x", item("judge", "x"))
