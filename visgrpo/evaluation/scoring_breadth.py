"""Item-level scorers of the breadth benchmarks (MMMU, MMMU-Pro, MathVision, ChartQA), each
the benchmark's official rule applied to the answer part of a completion.

The answer part is the last ``<answer>...</answer>`` when present, else the whole
completion (``visgrpo.rewards.parsing.answer_text``), as for every visgrpo scorer; the
official parsers then run on it unchanged.

* ``mmmu``: ``parse_multi_choice_response`` / ``parse_open_response`` + ``eval_*``
  (``scoring_mmmu.py``); the item's ``meta["question_type"]`` picks which.
* ``mmmu_pro``: MMMU-Pro's ``parse_multi_choice_response`` (``scoring_mmmu.py``).
* ``mathvision``: MathVision's extraction and ``is_equal`` (``scoring_mathvision.py``).
* ``dynamath``: DynaMath's comparison by answer type (``scoring_dynamath.py``).
* ``relaxed``: ChartQA's relaxed accuracy, 5% relative tolerance for numbers, exact
  (case-insensitive) otherwise: ``relaxed_correctness`` of google-research/pix2struct
  ``pix2struct/metrics.py`` L81-110, as lmms-eval's ``chartqa/utils.py`` scores it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring_dynamath import dynamath_correct, short_answer
from visgrpo.evaluation.scoring_mathvision import mathvision_correct
from visgrpo.evaluation.scoring_mmmu import (
    eval_multi_choice,
    eval_open,
    multi_choice_info,
    parse_multi_choice_response,
    parse_multi_choice_response_pro,
    parse_open_response,
)
from visgrpo.evaluation.scoring_rules import answer_part as rules_answer_part

RELAXED_TOLERANCE = 0.05
_BOXED = re.compile(r"\\boxed\{([^{}]{0,200})\}")


def answer_part(completion: str, max_chars: int = 4000) -> str:
    """The last ``<answer>`` block, else the completion (its last ``max_chars``)."""
    return rules_answer_part(completion)[-max_chars:]


def _rng(item: EvalItem) -> random.Random:
    """The official random guess, seeded by the record id (order-independent)."""
    return random.Random(f"{item.id}")


def score_mmmu(completion: str, item: EvalItem) -> float:
    """MMMU: multiple choice (letter) or open (string / number list) per ``question_type``."""
    response = answer_part(completion)
    if item.meta.get("question_type") == "open":
        return float(eval_open(item.answer, parse_open_response(response)))
    index2ans, letters = multi_choice_info(list(item.meta["options"]))
    return float(eval_multi_choice(item.answer,
                                   parse_multi_choice_response(response, letters, index2ans,
                                                               _rng(item))))


def score_mmmu_pro(completion: str, item: EvalItem) -> float:
    """MMMU-Pro: its parser, then exact letter match (evaluate.py L14-31)."""
    index2ans, letters = multi_choice_info(list(item.meta["options"]))
    pred = parse_multi_choice_response_pro(answer_part(completion), letters, index2ans, _rng(item))
    return float(pred == item.answer)


def score_mathvision(completion: str, item: EvalItem) -> float:
    return float(mathvision_correct(answer_part(completion), str(item.answer),
                                    list(item.meta.get("options") or [])))


def score_dynamath(completion: str, item: EvalItem) -> float:
    return float(dynamath_correct(short_answer(answer_part(completion)), str(item.answer),
                                  str(item.meta.get("answer_type"))))


def _to_float(text: str) -> float | None:
    """pix2struct metrics.py: ``"12%"`` -> 0.12."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str,
                        max_relative_change: float = RELAXED_TOLERANCE) -> bool:
    """pix2struct metrics.py L81-110: within 5% of a non-zero numeric target, else exact
    (case-insensitive). A zero target is compared as text, as officially.
    """
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


def score_relaxed(completion: str, item: EvalItem) -> float:
    r"""ChartQA: the answer part (its last ``\\boxed{}`` content when there is one, a
    trailing period dropped) against the gold with ``relaxed_correctness``.
    """
    text = answer_part(completion).strip()
    boxed = _BOXED.findall(text)
    pred = (boxed[-1] if boxed else text).strip().rstrip(".").strip()
    return float(relaxed_correctness(str(item.answer).strip(), pred))


BREADTH_SCORERS: dict[str, Callable[[str, EvalItem], float]] = {
    "mmmu": score_mmmu,
    "mmmu_pro": score_mmmu_pro,
    "mathvision": score_mathvision,
    "dynamath": score_dynamath,
    "relaxed": score_relaxed,
}
