r"""DynaMath's official rule-based scorer, transcribed.

Source: DynaMath/DynaMath ``evaluation/opensource_json_eval.py``: ``preprocess`` L26-40
(the JSON object in a response), ``transfer`` L43-49 (``"2π"`` -> 2·pi), the fallback
short answer L100-106, and the comparison L113-146 by ``answer_type``:

* ``float``: the first space-separated token of the short answer (unless it is all
  digits) as a number, within 0.001 of the ground truth;
* ``multiple choice``: a one-character answer must equal the gold letter, a longer one
  must hold it in its first three characters;
* otherwise: the ground truth is a substring of the short answer.

The authors ask for a JSON reply ``{"solution": ..., "short answer": ...}``; a reply
that is not JSON falls back, as theirs, to its last line minus the last character. For
visgrpo's prompts the short answer is read, in order, from such a JSON object, the last
``\boxed{}`` of the answer part, else the answer part itself (a documented addition:
the authors' prompt never yields a boxed answer).
"""

from __future__ import annotations

import json
import math
import re

_BOXED = re.compile(r"\\boxed\{([^{}]{0,200})\}")
FLOAT_TOLERANCE = 1e-3


def preprocess(text: str) -> str:
    """L26-40: the span from the first ``{`` to the last ``}``, backslashes dropped."""
    start, end = text.find("{"), text.rfind("}")
    if not text or start == -1 or end <= start:
        return text
    return text[start : end + 1].replace("\\", "").replace("\\n", "\n")


def transfer(text: str) -> float:
    """L43-49: ``"2π"`` -> 2·pi, else ``float``."""
    if "\u03c0" in text:
        return float(text.split("\u03c0")[0]) * math.pi
    return float(text)


def short_answer(answer_part: str) -> str:
    r"""The reply's short answer (JSON ``short answer``, else ``\boxed{}``, else the text)."""
    try:
        reply = json.loads(preprocess(answer_part), strict=False)
        if isinstance(reply, dict) and "short answer" in reply:
            return str(reply["short answer"])
    except ValueError:
        pass
    boxed = _BOXED.findall(answer_part)
    return (boxed[-1] if boxed else answer_part).strip()


def dynamath_correct(answer: str, ground_truth: str, answer_type: str) -> bool:
    """L113-146: the official comparison of a short answer with the ground truth."""
    try:
        if answer_type == "float":
            value = transfer(answer.split(" ")[0]) if not answer.isdigit() else float(answer)
            return abs(value - float(ground_truth)) <= FLOAT_TOLERANCE
        if answer_type == "multiple choice":
            return answer == ground_truth if len(answer) == 1 else ground_truth in answer[0:3]
        return ground_truth in answer
    except (ValueError, IndexError):
        return False
