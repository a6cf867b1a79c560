"""The official rules against hand-derived cases of realistic free-text outputs.

Each case gives a model output and what the official pipeline decides for it: for MathVista
the answer GPT-4 extracts (hand-derived, the way the official few-shot prompt extracts) run
through a transcription, kept here, of ``normalize_extracted_answer`` + ``safe_equal``
(lupantech/MathVista ``evaluation/calculate_score.py:27-87``); for POPE, We-Math and
HallusionBench the official parser's verdict worked out by hand from its code. The
target is >= 95% agreement per benchmark.
"""

from __future__ import annotations

import re

import pytest

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import score
from visgrpo.evaluation.scoring_mathvista import levenshtein
from visgrpo.evaluation.scoring_rules import pope_parse, wemath_parse, yorn_extract


def reference_mathvista(extraction, choices, question_type, answer_type, precision, answer):
    """calculate_score.py:27-87, transcribed independently (distance by brute force)."""
    def distance(a, b):
        d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        return d[-1][-1]

    if question_type == "multi_choice":
        extraction = extraction.strip()
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction in options:
            extraction = choices[options.index(extraction)]
        else:
            ds = [distance(extraction, c) for c in choices]
            extraction = choices[ds.index(min(ds))]
    elif answer_type == "integer":
        try:
            extraction = str(int(float(extraction)))
        except ValueError:
            extraction = None
    elif answer_type == "float":
        try:
            extraction = str(round(float(extraction), precision))
        except ValueError:
            extraction = None
    elif answer_type == "list":
        extraction = str(extraction)
    return extraction == answer


MC = (["blue", "red", "green"], "multi_choice", "text", None, "red")
MC_ANGLES = (["30°", "45°", "60°", "90°"], "multi_choice", "text", None, "60°")
INT = (None, "free_form", "integer", None, "1000")
INT7 = (None, "free_form", "integer", None, "7")
NEG = (None, "free_form", "integer", None, "-5")
FLOAT1 = (None, "free_form", "float", 1, "1.2")
FLOAT2 = (None, "free_form", "float", 2, "-0.25")
FLOAT_PCT = (None, "free_form", "float", 1, "12.5")
LIST = (None, "free_form", "list", None, "[2, 9]")
AREA = (None, "free_form", "integer", None, "25")

# (response, item, what GPT-4 extracts from it)
MATHVISTA_CASES = [
    ("The answer is (B).", MC, "B"), ("<answer>B</answer>", MC, "B"), ("B", MC, "B"),
    ("red", MC, "red"), ("The correct option is B: red.", MC, "B"),
    ("The red one is the largest, so the answer is red.", MC, "red"),
    ("\\boxed{C}", MC, "C"), ("I think it's green.", MC, "green"),
    ("<think>Blue is small.</think><answer>(A) blue</answer>", MC, "A"),
    ("Answer: (C)", MC, "C"), ("Option B is correct.", MC, "B"),
    ("The angle is 60°, so the answer is C.", MC_ANGLES, "C"),
    ("<answer>60°</answer>", MC_ANGLES, "60°"), ("The answer is D: 90°", MC_ANGLES, "D"),
    ("There are 1,000 people in the stadium.", INT, "1000"), ("\\boxed{1000}", INT, "1000"),
    ("<answer>1000</answer>", INT, "1000"), ("The total is 999.", INT, "999"),
    ("Counting each row: 3 + 4 = 7. The answer is 7 apples.", INT7, "7"),
    ("The answer is seven.", INT7, "7"), ("There are seven birds.", INT7, "7"),
    ("Final answer: 7", INT7, "7"), ("The answer is 8 because 4 + 4 = 8.", INT7, "8"),
    ("The temperature is \u22125 degrees.", NEG, "-5"), ("<answer>\u22125</answer>", NEG, "-5"),
    ("The length is 1.2 cm.", FLOAT1, "1.2"), ("<answer>1.23</answer>", FLOAT1, "1.23"),
    ("So the answer is 1.25 meters.", FLOAT1, "1.25"), ("x = 12/10 = 1.2", FLOAT1, "1.2"),
    ("The answer is 1.3", FLOAT1, "1.3"), ("\\boxed{1.2\\text{ m}}", FLOAT1, "1.2"),
    ("The slope is \u22120.25.", FLOAT2, "-0.25"), ("The slope is -1/4.", FLOAT2, "-0.25"),
    ("<answer>-\\frac{1}{4}</answer>", FLOAT2, "-0.25"), ("The slope is 0.25.", FLOAT2, "0.25"),
    ("The share is 12.5%.", FLOAT_PCT, "12.5"), ("Answer: 12.5\\%", FLOAT_PCT, "12.5"),
    ("The values are [2, 9].", LIST, "[2, 9]"), ("<answer>[2,9]</answer>", LIST, "[2, 9]"),
    ("", INT7, ""), ("**Answer:** B", MC, "B"),
    ("Therefore, the correct answer is option B.", MC, "B"),
    ("I think the answer is A... wait, the answer is B.", MC, "B"),
    ("<answer>The answer is (C) green</answer>", MC, "C"),
    ("The area is 25 cm^2.", AREA, "25"), ("The area is 25 m\u00b2.", AREA, "25"),
    ("The answer is 12 - 5 = 7.", INT7, "7"), ("The answer is 7. Because 3 + 4 = 7.", INT7, "7"),
    ("The answer is $\\boxed{7}$.", INT7, "7"), ("So, the answer is: **1,000**", INT, "1000"),
    ("We have x^2 = 49 so x = 7", INT7, "7"), ("The answer is 1.25.", FLOAT1, "1.25"),
    ("It is not blue; the largest bar is red.", MC, "red"), ("(B) red", MC, "B"),
]


def mathvista_item(fields):
    choices, qtype, atype, precision, answer = fields
    return EvalItem("q", [], "question", answer, "mathvista", atype,
                    {"choices": choices, "question_type": qtype, "answer_type": atype,
                     "precision": None if precision is None else float(precision)})


def test_mathvista_agrees_with_the_official_rules():
    agree = []
    for response, fields, extraction in MATHVISTA_CASES:
        official = reference_mathvista(extraction, fields[0], *fields[1:])
        agree.append(score(response, mathvista_item(fields)) == float(official))
    misses = [c[0] for c, ok in zip(MATHVISTA_CASES, agree, strict=True) if not ok]
    assert sum(agree) / len(agree) >= 0.95, misses
    assert len(MATHVISTA_CASES) >= 50


def test_mathvista_float_precision_and_integer_truncation_are_the_official_ones():
    assert score("<answer>1.24</answer>", mathvista_item(FLOAT1)) == 1.0  # round(1.24, 1)
    assert score("<answer>1.26</answer>", mathvista_item(FLOAT1)) == 0.0
    assert score("<answer>1000.7</answer>", mathvista_item(INT)) == 1.0  # str(int(float))
    assert score("nothing here", mathvista_item(INT)) == 0.0
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3


def test_mathverse_vision_only_choice_reads_the_option_text():
    item = EvalItem("5", [], "See the image.", "B", "choice", "Vision Only",
                    {"options": ["30°", "45°", "60°", "90°"]})
    assert score("<answer>45°</answer>", item) == 1.0
    assert score("The angle is 45°, so the answer is B.", item) == 1.0
    assert score("<answer>60°</answer>", item) == 0.0


# POPE: the first sentence's words decide (AoiDragon/POPE evaluate.py:9-21), worked by hand
POPE_CASES = [
    ("Yes, there is a dog in the image.", "yes"), ("No, there is no dog.", "no"),
    ("No.", "no"), ("Yes", "yes"), ("There is not a dog in the image.", "no"),
    ("I don't see any dog.", "yes"),  # the official parser: no "no"/"not" word -> yes
    ("There is a dog. No other animals are visible.", "yes"),  # first sentence only
    ("no", "no"), ("NO", "yes"),  # case-sensitive word match
    ("Yes, a car is parked on the left.", "yes"), ("No, the image shows no car.", "no"),
    ("There is no car in the image.", "no"), ("The image does not contain a car.", "no"),
    ("A car is not present.", "no"), ("Yes there is.", "yes"), ("No, none.", "no"),
    ("Not really, it is a truck.", "yes"), ("Unclear", "yes"), ("no, it is a cat.", "no"),
    ("I cannot tell, no.", "no"), ("<answer>No</answer>", "no"),
]


@pytest.mark.parametrize("text, parsed", POPE_CASES[:-1])
def test_pope_parser(text, parsed):
    assert pope_parse(text) == parsed


def test_pope_scorer_reads_the_answer_tag():
    item = EvalItem("q", [], "Is there a dog?", "no", "pope", "random")
    assert score(POPE_CASES[-1][0], item) == 1.0
    agree = [score(t, EvalItem("q", [], "?", p, "pope", "c")) == 1.0 for t, p in POPE_CASES]
    assert sum(agree) / len(agree) >= 0.95


# HallusionBench: VLMEvalKit YOrN_Extraction
YORN_CASES = [
    ("Yes, the line on the left is longer.", "yes"), ("No.", "no"), ("yes", "yes"),
    ("The answer is no, they are equal.", "no"), ("Yes and no.", "unknown"),
    ("I am not sure.", "unknown"), ("NO, it is not.", "no"), ("(Yes)", "yes"),
    ("No; the chart shows 2019.", "no"), ("<answer>Yes</answer>", "yes"),
]


@pytest.mark.parametrize("text, parsed", YORN_CASES[:-1])
def test_yorn_extraction(text, parsed):
    assert yorn_extract(text) == parsed


def test_hallusionbench_unknown_is_wrong():
    item = EvalItem("q", [], "?", "no", "yorn", "VD")
    assert score("Yes and no.", item) == 0.0 and score("<answer>Yes</answer>", item) == 0.0
    assert score("No, they are equal.", item) == 1.0


# We-Math: the first letter after the last "Answer" (four_dimensional_metrics.py:37-39)
WEMATH_CASES = [
    ("<Thought process>: 30 + 30 = 60. <Answer>: C", "C"), ("Answer: B. 45", "B"),
    ("The answer is B", None), ("Answer:B", "B"), ("<Answer>: E. No correct answer", "E"),
    ("Answer: I think B", None), ("Answer: (B)", None), ("B", "B"), ("", None),
    ("First Answer: A. Final Answer: D", "D"),
]


@pytest.mark.parametrize("text, parsed", WEMATH_CASES)
def test_wemath_parser(text, parsed):
    assert wemath_parse(text) == parsed


# LogicVista: sorted lists of lower-cased choices must be equal (extract_accuracy_new.py)
LOGICVISTA_CASES = [
    ("A", "A", 1), ("<answer>B</answer>", "A", 0), ("The answer is A.", "A", 1),
    ("A, C", "A, C", 1), ("C, A", "A, C", 1), ("A and C", "A, C", 1), ("A", "A, C", 0),
    ("The answer is 3.", "3", 1), ("3", "3", 1), ("There are 4 triangles.", "3", 0),
    ("", "", 1), ("<answer></answer>", "", 0), ("   ", "", 1), ("A", "", 0), ("F", "A", 0), ("?", "A", 0),
    ("\\boxed{D}", "D", 1), ("(B) and (D)", "B, D", 1),
    ("The odd one out is G, so the answer is G.", "G", 1),  # v1_4: options A-I
    ("G", "G", 0),  # a lone letter past E: "ZZZZZ" in the authors' code
    ("<answer>G</answer>", "G", 1),  # not a lone character: the extraction reads it
    ("<answer>A, C</answer>", "A, C", 1), ("The answer is 3", "3", 1),
]


@pytest.mark.parametrize("text, gold, expected", LOGICVISTA_CASES)
def test_logicvista_multi_numeric_and_empty_answers(text, gold, expected):
    assert score(text, EvalItem("v1_1", [], "Which?", gold, "logicvista", "x")) == expected
