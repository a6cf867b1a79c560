"""The mathverse_testmini benchmark loader (AI4Math/MathVerse (dataset card); ZrrSkywalker/MathVerse evaluation/)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("mathverse_testmini", scorer="choice",
          source="AI4Math/MathVerse (dataset card); ZrrSkywalker/MathVerse evaluation/")
def mathverse(root: Path) -> list[EvalItem]:
    """MathVerse testmini (``AI4Math/MathVerse``, config ``testmini``). Columns read:
    ``sample_index``, ``problem_version`` (Text Dominant ... Vision Only: the category),
    ``question_type`` (``multi-choice`` / ``free-form``), ``query_cot`` (the official CoT
    prompt; ``question`` if absent), ``image``, ``answer``. Multiple choice: option letter;
    free form: math-verify."""
    items = []
    for row in read_rows(root, split="testmini"):
        where = str(first(row, ("sample_index", "problem_index"), "?"))
        image = ImageRef(get(row, "image", where), root, where, "image")
        multi = str(get(row, "question_type", where)).startswith("multi")
        items.append(EvalItem(
            where, [image], row.get("query_cot") or get(row, "question", where),
            text(get(row, "answer", where)), "choice" if multi else "math",
            str(row.get("problem_version") or ("multi-choice" if multi else "free-form")),
        ))
    return items
