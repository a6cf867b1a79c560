"""MathVerse testmini: option letters (with the option list) or math-verify, per problem
version.
"""

from __future__ import annotations

import re
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_OPTION_LINE = re.compile(r"^\s*\(?([A-H])\)?\s*[:.：)]\s*(\S.*?)\s*$")


def parse_options(question: str) -> list[str]:
    """The option texts listed after ``Choices:`` (``A:30°`` / ``(B) 60°`` / ``C. 90°`` one
    a line), in letter order; ``[]`` when the text lists none.
    """
    _, sep, tail = question.rpartition("Choices")
    lines = tail.splitlines() if sep else question.splitlines()
    found = {}
    for line in lines:
        m = _OPTION_LINE.match(line)
        if m and m.group(1) not in found:
            found[m.group(1)] = m.group(2)
    letters = sorted(found)
    if not letters or letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return []
    return [found[k] for k in letters]


@register("mathverse_testmini", scorer="choice",
          source="AI4Math/MathVerse dataset card (config testmini); ZrrSkywalker/MathVerse "
                 "evaluation/extract_answer_s1.py, score_answer_s2.py (question_for_eval)")
def mathverse(root: Path) -> list[EvalItem]:
    """MathVerse testmini (``huggingface-cli download --repo-type dataset AI4Math/MathVerse``:
    the ``testmini`` parquet; the ``testmini_text_only`` config beside it is not read).
    Columns read: ``sample_index``, ``problem_version`` (Text Dominant, Text Lite, Vision
    Intensive, Vision Dominant, Vision Only: the category, so the table has one row per
    version), ``question_type`` (``multi-choice`` / ``free-form``), ``query_cot`` (the
    official CoT prompt; ``question`` if absent), ``question_for_eval`` (the full question
    with its ``Choices:`` list, which the official judge sees: Vision-Only questions have
    their options only in the image, so the option list comes from here), ``image``,
    ``answer``. Multiple choice: option letter, or the option text; free form:
    math-verify (the official score is a GPT-4 judge).
    """
    items = []
    for row in read_rows(root, split="testmini"):
        where = str(first(row, ("sample_index", "problem_index"), "?"))
        image = ImageRef(get(row, "image", where), root, where, "image")
        multi = str(get(row, "question_type", where)).startswith("multi")
        meta = {}
        if multi:
            full = row.get("question_for_eval") or row.get("question") or ""
            meta["options"] = parse_options(str(full))
        items.append(EvalItem(
            where, [image], row.get("query_cot") or get(row, "question", where),
            text(get(row, "answer", where)), "choice" if multi else "math",
            str(row.get("problem_version") or ("multi-choice" if multi else "free-form")), meta,
        ))
    return items
