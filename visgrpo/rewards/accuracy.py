"""Accuracy rewards: option letters, numbers/LaTeX (math-verify), normalised text, dispatch.

Every function follows the per-item protocol of ``types.py``: ``fn(completion, sample,
**kwargs) -> RewardValue``; 1.0 when correct, 0.0 otherwise, with a reason when the
completion could not be read. The answer is taken from the last ``<answer>...</answer>``
when present, else from the free text. Nothing is ever ``eval``-ed: numbers and LaTeX are
parsed by math-verify (sympy) in worker processes under a hard time limit
(``_mathpool.py``), so no completion can hang or execute anything in the trainer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from visgrpo.rewards._mathpool import MathPool, default_pool
from visgrpo.rewards.grounding import grounding_iou
from visgrpo.rewards.parsing import answer_text, normalise_text
from visgrpo.rewards.types import RewardValue

# ---------------------------------------------------------------------------- choice

_L = r"\(?\[?\**([A-Z])\**\]?\)?"  # a capital letter, optionally in (), [] or **bold**
_LONE = re.compile(r"^\s*(?:option\s+|choice\s+)?\(?\[?\**([A-Za-z])\**\]?\)?\s*[.:)]?\s*$", re.I)
_LEADING = re.compile(r"^\s*(?:option\s+|choice\s+)?(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])\s*[.:)])")
_PHRASES = [
    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-Z])\)?\s*\}"),
    re.compile(
        rf"(?:answer|option|choice)\s*(?:is|would be|should be|will be)?\s*"
        rf"(?:option\s+|choice\s+)?:?\s*{_L}(?![A-Za-z])",
        re.I,
    ),
]


def extract_choice(text: str, letters: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ") -> str | None:
    r"""The option letter a text commits to, or ``None``.

    Tried in order: the whole text is a lone letter (``"B"``, ``"(b)"``, ``"B."``,
    ``"**B**"``, ``"Option B"``); the LAST ``\boxed{B}``; the LAST phrase ``answer is (B)``
    / ``answer: B`` / ``correct option is B``; the text starts with a marked letter
    (``"B. cat"``, ``"(B) cat"``, ``"B) cat"``). Free-text letters must be upper case (``"a"``
    is an article); a lone letter may be lower case. Letters outside ``letters`` are ignored.
    """
    m = _LONE.match(text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    for pat in _PHRASES:
        found = [x for x in pat.findall(text) if x in letters]
        if found:
            return found[-1]
    m = _LEADING.match(text)
    if m:
        letter = next(g for g in m.groups() if g)
        if letter in letters:
            return letter
    return None


def _letters(sample: Mapping[str, Any], num_options: int | None) -> str:
    n = num_options
    if n is None:
        opts = sample.get("options", sample.get("choices"))
        n = len(opts) if isinstance(opts, (list, tuple)) and opts else 26
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: max(1, min(int(n), 26))]


def _gold(sample: Mapping[str, Any]) -> Any:
    if "answer" not in sample or sample["answer"] is None:
        raise ValueError(f"record {sample.get('id')!r}: field 'answer' is missing")
    return sample["answer"]


def choice_accuracy(
    completion: str,
    sample: Mapping[str, Any],
    *,
    answer_tag: str | None = "answer",
    num_options: int | None = None,
    max_chars: int = 20_000,
) -> RewardValue:
    """1 if the extracted option letter equals the gold letter (see :func:`extract_choice`).

    Args:
        completion: model output. sample: needs ``answer`` (``"B"``, ``"(B)"``, ``"B. cat"``).
        answer_tag: tag holding the answer (``None``: free text only).
        num_options: valid letters are the first ``num_options`` (default: length of the
            sample's ``options``/``choices`` column, else A-Z).
        max_chars: longer free text is scored on its last ``max_chars`` characters.

    Raises:
        ValueError: the gold answer is not an option letter (names the record).
    """
    letters = _letters(sample, num_options)
    gold = extract_choice(str(_gold(sample)).strip(), letters)
    if gold is None:
        raise ValueError(
            f"record {sample.get('id')!r}: answer {_gold(sample)!r} is not an option letter"
        )
    text, _ = answer_text(completion, answer_tag)
    pred = extract_choice(text[-max_chars:], letters)
    if pred is None:
        return RewardValue(0.0, "no option letter found")
    return RewardValue(float(pred == gold), None if pred == gold else f"chose {pred}")


# ---------------------------------------------------------------------------- math

_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _looks_bare(text: str) -> bool:
    r"""A bare formula (``x*2``, ``\frac{1}{2}``): no ``$``/``\(``/``\boxed`` and no words."""
    if any(s in text for s in ("$", "\\(", "\\[", "\\boxed")):
        return False
    return _WORD.search(text) is None


def math_payload(
    completion: str,
    sample: Mapping[str, Any],
    *,
    answer_tag: str | None = "answer",
    max_chars: int = 2000,
    float_rounding: int = 6,
) -> dict[str, Any] | RewardValue:
    """The worker payload of one math check, or a RewardValue when no check is needed."""
    gold = str(_gold(sample)).strip()
    if not gold:
        raise ValueError(f"record {sample.get('id')!r}: field 'answer' is empty")
    text, tagged = answer_text(completion, answer_tag)
    if not text:
        return RewardValue(0.0, "empty answer")
    if len(text) > max_chars:
        if tagged:
            return RewardValue(0.0, f"answer longer than {max_chars} characters")
        text = text[-max_chars:]
    return {
        "gold": gold[:max_chars],
        "pred": text,
        "gold_wrap": _looks_bare(gold),
        "pred_wrap": tagged and _looks_bare(text),
        "float_rounding": int(float_rounding),
    }


def math_reply_to_value(reply: Mapping[str, Any]) -> RewardValue:
    """Turn a worker reply into a reward (timeout -> 0 with reason ``"timeout"``)."""
    status = reply.get("status")
    if status == "timeout":
        return RewardValue(0.0, "timeout")
    if status != "ok":
        return RewardValue(0.0, f"math check failed: {reply.get('error')}")
    res = reply["result"]
    return RewardValue(1.0 if res["correct"] else 0.0, res.get("reason"))


def math_accuracy(
    completion: str,
    sample: Mapping[str, Any],
    *,
    answer_tag: str | None = "answer",
    timeout: float = 5.0,
    max_chars: int = 2000,
    float_rounding: int = 6,
    pool: MathPool | None = None,
) -> RewardValue:
    r"""1 if the answer equals the gold number/expression under math-verify's equivalence.

    ``\frac{1}{2}`` = ``0.5`` = ``1/2``; ``2x`` = ``x*2``; ``1{,}000`` = ``1000``. Bare
    answers (in the tag, or the gold) are also parsed as LaTeX inside ``$...$``; free text
    is handed to math-verify's extraction (``\boxed{}``, last formula / number).

    Args:
        timeout: seconds per check (hard limit; 0 with reason ``"timeout"`` when exceeded).
        max_chars: a tagged answer longer than this scores 0; longer free text is cut to its
            last ``max_chars`` characters.
        float_rounding: decimal places for numeric comparison (math-verify).
        pool: worker pool (default: the process-wide pool, see ``_mathpool.default_pool``).
    """
    payload = math_payload(
        completion,
        sample,
        answer_tag=answer_tag,
        max_chars=max_chars,
        float_rounding=float_rounding,
    )
    if isinstance(payload, RewardValue):
        return payload
    return math_reply_to_value((pool or default_pool()).run(payload, timeout=timeout))


# ---------------------------------------------------------------------------- text


def exact_accuracy(
    completion: str,
    sample: Mapping[str, Any],
    *,
    answer_tag: str | None = "answer",
    max_chars: int = 2000,
) -> RewardValue:
    """1 if the normalised answer equals the normalised gold (any of them, if a list).

    Normalisation (``parsing.normalise_text``): NFKC, lowercase, punctuation and articles
    removed, whitespace squeezed. Without an answer tag the whole completion must match.
    """
    gold = _gold(sample)
    golds = [str(g) for g in gold] if isinstance(gold, (list, tuple)) else [str(gold)]
    targets = {normalise_text(g) for g in golds} - {""}
    if not targets:
        raise ValueError(
            f"record {sample.get('id')!r}: field 'answer' is empty after normalisation"
        )
    text, _ = answer_text(completion, answer_tag)
    if len(text) > max_chars:
        return RewardValue(0.0, f"answer longer than {max_chars} characters")
    pred = normalise_text(text)
    if not pred:
        return RewardValue(0.0, "empty answer")
    return RewardValue(float(pred in targets), None if pred in targets else "no exact match")


# ---------------------------------------------------------------------------- dispatch


def accuracy(
    completion: str,
    sample: Mapping[str, Any],
    *,
    answer_tag: str | None = "answer",
    timeout: float = 5.0,
    box_mode: str = "threshold",
    iou_threshold: float = 0.5,
    pool: MathPool | None = None,
) -> RewardValue:
    """Accuracy by the sample's ``answer_type``.

    ``choice`` -> :func:`choice_accuracy`; ``number`` -> :func:`math_accuracy`; ``text`` ->
    :func:`exact_accuracy`; ``box`` -> ``grounding.grounding_iou`` (``box_mode``
    ``"threshold"``: 1 if IoU >= ``iou_threshold``; ``"iou"``: the IoU itself).

    Raises:
        ValueError: unknown ``answer_type`` (names the record).
    """
    kind = sample.get("answer_type")
    if kind == "choice":
        return choice_accuracy(completion, sample, answer_tag=answer_tag)
    if kind == "number":
        return math_accuracy(completion, sample, answer_tag=answer_tag, timeout=timeout, pool=pool)
    if kind == "text":
        return exact_accuracy(completion, sample, answer_tag=answer_tag)
    if kind == "box":
        return grounding_iou(
            completion, sample, answer_tag=answer_tag, mode=box_mode, threshold=iou_threshold
        )
    raise ValueError(
        f"record {sample.get('id')!r}: answer_type {kind!r} is not one of choice, number, text, box"
    )
