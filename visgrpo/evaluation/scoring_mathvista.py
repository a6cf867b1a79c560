r"""MathVista's official scoring: answer extraction, ``normalize_extracted_answer`` and
``safe_equal`` (lupantech/MathVista, ``evaluation/extract_answer.py`` and
``evaluation/calculate_score.py``).

The official pipeline is two steps:

1. **Extraction** (``extract_answer.py:33-75``): an empty response gives ``""``; a
   multiple-choice response that *is* one of the choices is kept; an integer / float
   response that parses is kept; with ``--quick_extract``, ``The answer is "X".`` gives
   ``X``; everything else goes to GPT-4 with a few-shot prompt that pulls out the final
   answer. Without a judge, visgrpo replaces that GPT-4 call by the rules of
   :func:`rule_extract` (the final-answer span: ``<answer>``, ``\boxed{}``, ``answer is``
   / ``Answer:``; then a letter, an option text or a number, with Unicode minus, thousands
   separators, number words and units handled) -- the answers GPT-4 extracts for such
   outputs.
2. **Normalisation and comparison** (``calculate_score.py:27-82``), transcribed exactly:
   multiple choice maps ``(A)`` / ``A`` to the choice text, else the choice with the
   smallest Levenshtein distance; integers become ``str(int(float(x)))``; floats
   ``str(round(float(x), precision))``; lists ``str(x)``; then the prediction must equal
   the answer string.
"""

from __future__ import annotations

import re
from typing import Any

from visgrpo.rewards.accuracy import extract_choice
from visgrpo.rewards.parsing import answer_text

_QUICK = re.compile(r'The answer is "(.*)"\.')  # extract_answer.py:60
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\}){0,200})\}")
_FINAL = re.compile(
    r"answer\**\s*(?:is|would be|should be|will be|=|:)\s*:?", re.I)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+")
_LETTER = re.compile(r"^\s*\(?([A-Za-z])\)?\s*[.:)]?\s*$")
_LETTER_IN = re.compile(r"(?:^|[\s(\[:])\(?([A-Z])\)(?=[\s.,:;]|$)|^\s*([A-Z])\s*(?:[.:)]|$)")
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\uff0d": "-",
                        "\u00a0": " ", "\u2009": " "})
_WORDS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty"))}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.I)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), as ``Levenshtein.distance``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def get_most_similar(prediction: str, choices: list[str]) -> str:
    """The choice nearest to ``prediction`` (``calculate_score.py:17-24``: first minimum)."""
    distances = [levenshtein(prediction, choice) for choice in choices]
    return choices[distances.index(min(distances))]


def normalize_extracted_answer(extraction: Any, choices: list[str] | None, question_type: str,
                               answer_type: str, precision: int | None) -> str | None:
    """``calculate_score.py:27-74``, transcribed (``precision`` as an int: the parquet
    release stores it as a float, which ``round`` rejects).
    """
    if question_type == "multi_choice":
        extraction = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices or []))]
        if extraction in options:
            return choices[options.index(extraction)]
        return get_most_similar(extraction, list(choices or []))
    if answer_type == "integer":
        try:
            return str(int(float(extraction)))
        except (TypeError, ValueError, OverflowError):
            return None
    if answer_type == "float":
        try:
            return str(round(float(extraction), precision))
        except (TypeError, ValueError, OverflowError):
            return None
    if answer_type == "list":
        return str(extraction)
    return extraction


def safe_equal(prediction: Any, answer: Any) -> bool:
    """``calculate_score.py:77-87``: plain equality."""
    try:
        return bool(prediction == answer)
    except Exception:  # noqa: BLE001 (the official function swallows every error)
        return False


def official_quick_extract(response: str, choices: list[str] | None, question_type: str,
                           answer_type: str) -> str | None:
    """The rule steps of ``extract_answer.py:33-66`` (``None``: the official code would
    ask GPT-4).
    """
    if response == "":
        return ""
    if question_type == "multi_choice" and response in (choices or []):
        return response
    if answer_type == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if answer_type == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    m = _QUICK.search(response)
    return m.group(1) if m else None


def final_span(response: str) -> tuple[str, bool]:
    r"""The part of a response that states the final answer, and whether a marker
    (``<answer>``, ``\\boxed{}``, ``answer is``) was found.
    """
    inner, tagged = answer_text(response, "answer")
    if tagged:
        return inner.strip(), True
    boxed = _BOXED.findall(response)
    if boxed:
        return boxed[-1].strip(), True
    found = list(_FINAL.finditer(response))
    if found:
        return response[found[-1].end():].strip(), True
    return response.strip(), False


def _first_statement(span: str) -> str:
    """A final-answer span up to its first sentence end (``5. Because ...`` -> ``5``)."""
    head = re.split(r"\.(?!\d)|\n", span, maxsplit=1)[0].strip()
    return head or span


def _clean_number_text(text: str) -> str:
    text = text.translate(_MINUS).replace("*", "")
    text = re.sub(r"(?<=[A-Za-z])\s*\^\s*\{?\d+\}?|[\u00b2\u00b3]", " ", text)  # cm^2, m²
    text = re.sub(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", text)
    text = re.sub(r"\^\{?\\circ\}?|°|\\%|%|\$", " ", text)
    return _WORD.sub(lambda m: str(_WORDS[m.group(1).lower()]), text)


def _to_number(token: str) -> str | None:
    token = token.replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            num, den = token.split("/")
            return str(float(num) / float(den))
        float(token)
        return token
    except (ValueError, ZeroDivisionError):
        return None


def rule_extract(response: str, choices: list[str] | None, question_type: str,
                 answer_type: str) -> str:
    """The answer a response gives: the official quick rules, then visgrpo's rules in
    place of the GPT-4 extraction.
    """
    quick = official_quick_extract(response, choices, question_type, answer_type)
    if quick is not None:
        return quick
    span, marked = final_span(response)
    span = span.replace("*", "").replace("$", "").strip()
    if question_type == "multi_choice":
        letters = "".join(chr(ord("A") + i) for i in range(len(choices or [])))
        m = _LETTER.match(span) or _LETTER_IN.search(span)
        if m and (letter := next(g for g in m.groups() if g).upper()) in letters:
            return letter
        letter = extract_choice(span, letters) or extract_choice(response, letters)
        if letter:
            return letter
        norm = span.lower().strip(" .")
        exact = [c for c in choices or [] if c.lower() == norm]
        if exact:
            return exact[0]
        low = span.lower()  # the option named last ("not blue, it is red"), longest on a tie
        named = [(low.rfind(c.lower()), len(c), c) for c in choices or [] if c and c.lower() in low]
        return max(named)[2] if named else span
    if answer_type in ("integer", "float"):
        text = _clean_number_text(_first_statement(span) if marked else span)
        if marked and "=" in text:  # "12 - 5 = 7": the result
            text = text.rsplit("=", 1)[1]
        numbers = _NUMBER.findall(text) or _NUMBER.findall(_clean_number_text(span))
        if not numbers:
            return ""
        value = _to_number(numbers[0] if marked else numbers[-1])
        return value if value is not None else ""
    if answer_type == "list":
        found = re.findall(r"\[[^\[\]]*\]", span)
        return found[-1].replace(" ", "").replace(",", ", ") if found else span
    return span.strip().rstrip(".").strip()


def score_mathvista(response: str, choices: list[str] | None, question_type: str,
                    answer_type: str, precision: Any, answer: str) -> float:
    """1.0 when the extracted, normalised answer equals ``answer`` (MathVista's rules)."""
    if precision is not None and not (isinstance(precision, float) and precision != precision):
        precision = int(precision)
    else:
        precision = None
    extraction = rule_extract(response, choices, question_type, answer_type)
    prediction = normalize_extracted_answer(extraction, choices, question_type, answer_type,
                                            precision)
    return float(safe_equal(prediction, answer))
