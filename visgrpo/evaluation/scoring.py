r"""Rule-based scorers of benchmark answers (no judge model; nothing is ever ``eval``-ed).

Each scorer is ``fn(completion, item) -> float`` in [0, 1]. The answer is read from the
last ``<answer>...</answer>`` when present, else from the whole completion
(``visgrpo.rewards.parsing.answer_text``), exactly like the training rewards, so a model
scores the same here as in its reward.

* ``choice``: option letter (``"The answer is (B)"``, ``\boxed{B}``, ``"B. cat"``: the
  training reward's ``extract_choice``), else the option text itself (normalised, must equal
  exactly one option). Several gold letters (``"A, C"``, LogicVista) need the same set.
* ``number``: the last number in the answer (``\boxed{}`` content first), equal to the gold
  after rounding both to the benchmark's ``precision`` decimals (MathVista), else within a
  relative tolerance of 1e-2.
* ``math``: math-verify equivalence (``visgrpo.rewards.accuracy.math_accuracy``: sympy in
  worker processes under a time limit).
* ``yesno``: the first ``yes`` / ``no`` word of the answer.
* ``text``: normalised exact match (``exact_accuracy``).
* ``box``: IoU >= 0.5 between the predicted box, read in the model family's coordinate
  convention (``visgrpo.rewards.grounding``), and the gold box in original pixels.

The official rules of single benchmarks (``scoring_mathvista.py``, ``scoring_rules.py``):

* ``mathvista``: MathVista's extraction, ``normalize_extracted_answer`` and ``safe_equal``.
* ``pope``: POPE's parser (a ``no`` / ``not`` in the first sentence means no).
* ``yorn``: VLMEvalKit's ``YOrN_Extraction`` (HallusionBench): yes / no / unknown.
* ``wemath``: We-Math's parser (first letter after the last ``Answer``).
* ``logicvista``: LogicVista's set match of letters or numbers (``"A, C"``, ``"3"``, ``""``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring_breadth import BREADTH_SCORERS
from visgrpo.evaluation.scoring_mathvista import score_mathvista
from visgrpo.evaluation.scoring_rules import (
    answer_part,
    logicvista_match,
    pope_parse,
    wemath_parse,
    yorn_extract,
)
from visgrpo.rewards.accuracy import exact_accuracy, extract_choice, math_accuracy
from visgrpo.rewards.grounding import grounding_iou
from visgrpo.rewards.parsing import answer_text, normalise_text

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IOU_THRESHOLD = 0.5
REL_TOL = 1e-2
_NUMBER = re.compile(r"-?\d{1,12}(?:,\d{3})*(?:\.\d{1,12})?")
_BOXED = re.compile(r"\\boxed\{([^{}]{0,200})\}")
_YESNO = re.compile(r"\b(yes|no)\b", re.I)
_LETTER_LIST = re.compile(r"^[\s(\[]*([A-Z])[\s)\].]*(?:(?:,|and|&|\s)+[\s(\[]*([A-Z])[\s)\].]*)*$")


def _answer(completion: str, max_chars: int = 4000) -> str:
    text, _ = answer_text(completion, "answer")
    return text[-max_chars:]


def gold_letters(answer: str) -> frozenset[str]:
    """Gold option letters of ``"B"``, ``"(B)"``, ``"A, C"`` (empty when not letters)."""
    text = str(answer).strip()
    if not _LETTER_LIST.match(text):
        return frozenset()
    return frozenset(re.findall(r"[A-Z]", text))


def _option_letter(text: str, options: list[str]) -> str | None:
    """The letter of the option whose text the answer is (normalised exact match)."""
    norm = normalise_text(text)
    hits = [i for i, opt in enumerate(options) if norm and normalise_text(opt) == norm]
    return LETTERS[hits[0]] if len(hits) == 1 else None


def score_choice(completion: str, item: EvalItem) -> float:
    gold = gold_letters(item.answer)
    if not gold:
        raise ValueError(f"record {item.id!r}: answer {item.answer!r} is not an option letter")
    options = list(item.meta.get("options") or [])
    letters = LETTERS[: len(options)] if options else LETTERS
    text = _answer(completion)
    if len(gold) > 1:
        found = _LETTER_LIST.match(text.strip())
        pred = frozenset(re.findall(r"[A-Z]", text.strip())) if found else frozenset()
        return float(pred == gold)
    pred = extract_choice(text, letters)
    if pred is None and options:
        pred = _option_letter(text, options)
    return float(pred is not None and pred in gold)


def parse_number(text: str) -> float | None:
    r"""The number a text ends on: the last ``\\boxed{}`` content's last number, else the
    text's last number (thousands separators allowed), or ``None``.
    """
    boxed = _BOXED.findall(text)
    for source in ([boxed[-1]] if boxed else []) + [text]:
        found = _NUMBER.findall(source)
        if found:
            value = float(found[-1].replace(",", ""))
            if math.isfinite(value):
                return value
    return None


def numbers_match(pred: float, gold: float, precision: int | None = None) -> bool:
    """Equal after rounding to ``precision`` decimals, else within relative 1e-2."""
    if precision is not None:
        return round(pred, precision) == round(gold, precision)
    return math.isclose(pred, gold, rel_tol=REL_TOL, abs_tol=1e-9)


def score_number(completion: str, item: EvalItem) -> float:
    gold = parse_number(str(item.answer))
    if gold is None:
        raise ValueError(f"record {item.id!r}: answer {item.answer!r} is not a number")
    pred = parse_number(_answer(completion))
    precision = item.meta.get("precision")
    precision = int(precision) if precision is not None and not _isnan(precision) else None
    return float(pred is not None and numbers_match(pred, gold, precision))


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def score_math(completion: str, item: EvalItem) -> float:
    return math_accuracy(completion, {"id": item.id, "answer": str(item.answer)}).value


def score_yesno(completion: str, item: EvalItem) -> float:
    gold = str(item.answer).strip().lower()
    if gold not in ("yes", "no"):
        raise ValueError(f"record {item.id!r}: answer {item.answer!r} is not yes/no")
    m = _YESNO.search(_answer(completion))
    return float(m is not None and m.group(1).lower() == gold)


def score_text(completion: str, item: EvalItem) -> float:
    return exact_accuracy(completion, {"id": item.id, "answer": item.answer}).value


def score_box(completion: str, item: EvalItem) -> float:
    """IoU >= 0.5; ``item.meta`` holds ``family``, ``width``, ``height``, ``resized_hw``."""
    sample = {"id": item.id, "answer": list(item.answer), **item.meta}
    return grounding_iou(completion, sample, mode="threshold", threshold=IOU_THRESHOLD).value


def _yesno_gold(item: EvalItem) -> str:
    gold = str(item.answer).strip().lower()
    if gold not in ("yes", "no"):
        raise ValueError(f"record {item.id!r}: answer {item.answer!r} is not yes/no")
    return gold


def score_mathvista_item(completion: str, item: EvalItem) -> float:
    m = item.meta
    return score_mathvista(completion, m.get("choices"), m["question_type"], m["answer_type"],
                           m.get("precision"), str(item.answer))


def score_pope(completion: str, item: EvalItem) -> float:
    return float(pope_parse(answer_part(completion)) == _yesno_gold(item))


def score_yorn(completion: str, item: EvalItem) -> float:
    return float(yorn_extract(answer_part(completion)) == _yesno_gold(item))


def score_wemath(completion: str, item: EvalItem) -> float:
    return float(wemath_parse(answer_part(completion)) == str(item.answer).strip())


def score_logicvista(completion: str, item: EvalItem) -> float:
    return float(logicvista_match(completion, str(item.answer)))


SCORERS: dict[str, Callable[[str, EvalItem], float]] = {
    "choice": score_choice,
    "number": score_number,
    "math": score_math,
    "yesno": score_yesno,
    "text": score_text,
    "box": score_box,
    "mathvista": score_mathvista_item,
    "pope": score_pope,
    "yorn": score_yorn,
    "wemath": score_wemath,
    "logicvista": score_logicvista,
    **BREADTH_SCORERS,  # mmmu, mmmu_pro, mathvision, dynamath, relaxed (scoring_breadth.py)
}


def score(completion: str, item: EvalItem) -> float:
    """Score one completion with the item's scorer."""
    try:
        fn = SCORERS[item.scorer]
    except KeyError:
        raise ValueError(
            f"record {item.id!r}: unknown scorer {item.scorer!r}; valid: {', '.join(SCORERS)}"
        ) from None
    return float(fn(completion, item))
