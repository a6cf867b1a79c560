"""Accuracy rewards: choice extraction table, math-verify equivalences, exact normalisation."""

from __future__ import annotations

import pytest

from visgrpo.rewards import (
    accuracy,
    choice_accuracy,
    exact_accuracy,
    extract_choice,
    math_accuracy,
    normalise_text,
)

# ----------------------------------------------------------------------------- choice


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),  # lone letter
        ("(b)", "B"),  # lone letter in parentheses, lower case allowed when alone
        ("C.", "C"),
        ("**D**", "D"),
        ("Option B", "B"),
        ("The answer is (B).", "B"),
        ("answer: C", "C"),
        ("Answer: **D**", "D"),
        ("so the final result is \\boxed{D}", "D"),
        ("I think A is wrong; the correct option is C", "C"),  # phrase beats stray capitals
        ("A. is tempting, but the answer is B", "B"),  # explicit phrase beats a leading letter
        ("The answer is A. Wait, no: the answer is C", "C"),  # the LAST phrase wins
        ("B. a cat on the mat", "B"),  # leading marked letter
        ("(A) the red one", "A"),
        ("A cat sat on the mat", None),  # article, not an option
        ("the answer is a dog", None),  # lower-case 'a' after "answer is" is an article
        ("", None),
        ("no idea", None),
    ],
)
def test_extract_choice_table(text, letter):
    assert extract_choice(text) == letter


def test_extract_choice_respects_valid_letters():
    # with four options only A-D exist: "E" is not an answer
    assert extract_choice("E", "ABCD") is None
    assert extract_choice("The answer is E", "ABCD") is None
    assert extract_choice("The answer is D", "ABCD") == "D"


def test_choice_accuracy_uses_answer_tag_and_gold_forms():
    s = {"id": "q1", "answer": "(B) a cat", "answer_type": "choice"}
    assert choice_accuracy("<think>A or B?</think><answer>B</answer>", s).value == 1.0
    # the thinking mentions "answer is A" but the tag says C: the tag wins -> wrong
    r = choice_accuracy("<think>the answer is A</think><answer>(C)</answer>", s)
    assert r == (0.0, "chose C")
    r = choice_accuracy("<answer>hmm</answer>", s)
    assert r == (0.0, "no option letter found")
    # options column limits the letters: 3 options -> A-C, so "D" is not read as an answer
    s3 = {"answer": "A", "options": ["x", "y", "z"]}
    assert choice_accuracy("<answer>D</answer>", s3).reason == "no option letter found"


def test_choice_accuracy_bad_gold_names_record():
    with pytest.raises(ValueError, match=r"record 'q9'.*not an option letter"):
        choice_accuracy("B", {"id": "q9", "answer": "forty-two"})
    with pytest.raises(ValueError, match=r"record 'q8'.*'answer' is missing"):
        choice_accuracy("B", {"id": "q8"})


# ----------------------------------------------------------------------------- math


@pytest.mark.parametrize(
    ("completion", "gold", "value"),
    [
        ("<answer>\\frac{1}{2}</answer>", "0.5", 1.0),  # 1/2 = 0.5
        ("<answer>0.5</answer>", "\\frac{1}{2}", 1.0),
        ("<answer>1/2</answer>", "0.5", 1.0),
        ("<answer>x*2</answer>", "2x", 1.0),  # commutativity, implicit product
        ("<answer>2 \\cdot x</answer>", "2x", 1.0),
        ("<answer>1{,}000</answer>", "1000", 1.0),
        ("<answer>\\sqrt 2</answer>", "\\sqrt{2}", 1.0),
        ("<answer>The answer is 12 apples</answer>", "12", 1.0),  # words: free-text parse
        ("so the answer is \\boxed{12}.", "12", 1.0),  # no tag: math-verify extraction
        ("<answer>13</answer>", "12", 0.0),
        ("<answer>0.51</answer>", "0.5", 0.0),
        ("<answer>2x+1</answer>", "2x", 0.0),
    ],
)
def test_math_accuracy_equivalences(pool, completion, gold, value):
    r = math_accuracy(completion, {"answer": gold, "answer_type": "number"}, pool=pool)
    assert r.value == value, r


def test_math_accuracy_reasons(pool):
    s = {"answer": "12"}
    assert math_accuracy("<answer>13</answer>", s, pool=pool) == (0.0, "not equivalent")
    assert math_accuracy("<answer></answer>", s, pool=pool) == (0.0, "empty answer")
    assert math_accuracy("<answer>no number here</answer>", s, pool=pool) == (
        0.0,
        "no parsable answer",
    )
    long = "<answer>" + "1" * 2001 + "</answer>"
    assert math_accuracy(long, s, pool=pool) == (0.0, "answer longer than 2000 characters")
    with pytest.raises(ValueError, match="record 'm1'.*empty"):
        math_accuracy("<answer>1</answer>", {"id": "m1", "answer": " "}, pool=pool)


# ----------------------------------------------------------------------------- exact


def test_normalise_text_by_hand():
    # lower -> "  the  eiffel-tower! "; punctuation dropped -> "  the  eiffeltower "
    # article "the" dropped, spaces squeezed -> "eiffeltower"
    assert normalise_text("  The  Eiffel-Tower! ") == "eiffeltower"
    assert normalise_text("A cat, an owl and THE dog.") == "cat owl and dog"
    assert normalise_text("Ｒｅｄ") == "red"  # NFKC folds full-width letters


def test_exact_accuracy():
    s = {"answer": "The red car"}
    assert exact_accuracy("<answer>red car.</answer>", s).value == 1.0
    assert exact_accuracy("<answer>RED   CAR!</answer>", s).value == 1.0
    assert exact_accuracy("<answer>blue car</answer>", s) == (0.0, "no exact match")
    assert exact_accuracy("red car", s).value == 1.0  # no tag: whole completion
    assert exact_accuracy("I think: red car", s).value == 0.0
    assert exact_accuracy("<answer>?!</answer>", s) == (0.0, "empty answer")
    assert exact_accuracy("<answer>crimson</answer>", {"answer": ["red", "crimson"]}).value == 1.0


# ----------------------------------------------------------------------------- dispatch


def test_accuracy_dispatch(pool):
    assert accuracy("<answer>C</answer>", {"answer": "C", "answer_type": "choice"}).value == 1.0
    assert (
        accuracy(
            "<answer>3/4</answer>", {"answer": "0.75", "answer_type": "number"}, pool=pool
        ).value
        == 1.0
    )
    assert (
        accuracy("<answer>Paris</answer>", {"answer": "paris", "answer_type": "text"}).value == 1.0
    )
    box = {
        "answer": "[0, 0, 10, 10]",
        "answer_type": "box",
        "family": "qwen2_5_vl",
        "width": 100,
        "height": 100,
        "resized_hw": [(100, 100)],
    }
    # resized == original, so the answer is compared as written: IoU([5,5,15,15], gold) = 25/175
    assert accuracy("<answer>[5, 5, 15, 15]</answer>", box, box_mode="iou").value == pytest.approx(
        25 / 175
    )
    assert accuracy("<answer>[5, 5, 15, 15]</answer>", box, iou_threshold=0.1).value == 1.0
    assert accuracy("<answer>[5, 5, 15, 15]</answer>", box, iou_threshold=0.5).value == 0.0
    with pytest.raises(ValueError, match="record 'z'.*answer_type 'essay'"):
        accuracy("x", {"id": "z", "answer": "x", "answer_type": "essay"})
