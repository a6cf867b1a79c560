"""The MathVision benchmark loader (MathLLMs/MathVision (dataset card); mathllm/MATH-V evaluation/)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import LETTERS
from visgrpo.evaluation.sources import ImageRef, read_rows

SOURCE = "MathLLMs/MathVision (dataset card); mathllm/MATH-V evaluation/evaluate.py, utils.py"


def _load(root: Path, split: str) -> list[EvalItem]:
    """MathVision (``MathLLMs/MathVision``: ``data/test-*.parquet`` (3,040 rows) and
    ``data/testmini-*.parquet`` (304), plus ``images/``). Columns read: ``id``,
    ``question`` (with ``<image1>`` markers), ``options`` (a list; empty for a free-form
    answer), ``decoded_image`` (else ``image``, a path such as ``images/1.jpg``),
    ``answer`` (the option letter, or the value), ``subject`` (the category), ``level``.
    The question gets the options as ``(A) ...`` lines, as the authors' model scripts add
    them. Scorer: MathVision's ``is_equal`` on the extracted answer (``mathvision``).
    """
    items = []
    for i, row in enumerate(read_rows(root, split=split)):
        where = str(row.get("id", i))
        image = ImageRef(first(row, ("decoded_image", "image"), where), root, where, "image")
        options = [str(o) for o in (row.get("options") or [])]
        answer = text(get(row, "answer", where))
        if options and answer not in LETTERS[: len(options)]:
            raise ValueError(f"record {where!r}: answer {answer!r} is not one of its "
                             f"{len(options)} option letters")
        question = get(row, "question", where)
        if options:
            question += "\nChoices: " + " ".join(f"({LETTERS[k]}) {o}" for k, o in enumerate(options))
        items.append(EvalItem(where, [image], question, answer, "mathvision",
                              str(row.get("subject") or "math"),
                              {"options": options, "level": row.get("level")}))
    return items


@register("mathvision", scorer="mathvision", source=SOURCE)
def mathvision(root: Path) -> list[EvalItem]:
    """MathVision ``test`` (see :func:`_load`)."""
    return _load(root, "test")


@register("mathvision_testmini", scorer="mathvision", source=SOURCE)
def mathvision_testmini(root: Path) -> list[EvalItem]:
    """MathVision ``testmini`` (see :func:`_load`)."""
    return _load(root, "testmini")
