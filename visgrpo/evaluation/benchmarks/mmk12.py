"""The MMK12 benchmark loader (FanqingM/MMK12 (dataset card, MM-Eureka's evaluation set))."""

from __future__ import annotations

import re
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import LETTERS
from visgrpo.evaluation.sources import ImageRef, read_rows

_OPTION_LINE = re.compile(r"^\s*([A-H])\s*[.．:：]\s*(.+?)\s*$", re.M)


def inline_options(question: str) -> list[str]:
    """The ``A. ...`` option lines of a question, in order (empty unless they run A, B, ...)."""
    found = _OPTION_LINE.findall(question)
    letters = [k for k, _ in found]
    return [t for _, t in found] if letters == list(LETTERS[: len(found)]) else []


@register("mmk12", scorer="choice",
          source="FanqingM/MMK12 (dataset card; MM-Eureka's evaluation set); "
                 "lmms-eval tasks/mmk12 (test split description)")
def mmk12(root: Path) -> list[EvalItem]:
    """MMK12 ``test`` (``FanqingM/MMK12``: ``data/test-*.parquet`` beside the 15k-row
    ``train`` shards, which are skipped): 2,000 four-way multiple-choice K-12 questions,
    500 each of math, physics, chemistry and biology. Columns read: ``id``, ``subject``
    (the category), ``image``, ``question`` (options written inline as ``A. ...`` lines),
    ``answer`` (the letter). Scorer: option letter, or the option's text (parsed from the
    inline lines). The papers reporting it (PAPO, VPPO, VGPO, EASE) score with their
    training reward; lmms-eval uses an LLM judge; neither is reproduced exactly.
    """
    items = []
    for i, row in enumerate(read_rows(root, split="test")):
        where = str(row.get("id", i))
        question = get(row, "question", where)
        answer = text(get(row, "answer", where))
        options = inline_options(question)
        if len(answer) != 1 or answer not in (LETTERS[: len(options)] if options else LETTERS):
            raise ValueError(f"record {where!r}: answer {answer!r} is not an option letter")
        value = first(row, ("image", "images"), where)
        if isinstance(value, list):  # an EasyR1-style list of one image
            if not value:
                raise ValueError(f"record {where!r}: column 'images' is empty")
            value = value[0]
        image = ImageRef(value, root, where, "image")
        items.append(EvalItem(where, [image], question.replace("<image>", "").strip(), answer,
                              "choice", str(row.get("subject") or "mmk12"), {"options": options}))
    return items
