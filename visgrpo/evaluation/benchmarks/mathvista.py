"""The mathvista_testmini benchmark loader (AI4Math/MathVista (dataset card); lupantech/MathVista evaluation/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import LETTERS
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("mathvista_testmini", scorer="choice",
          source="AI4Math/MathVista (dataset card); lupantech/MathVista evaluation/")
def mathvista(root: Path) -> list[EvalItem]:
    """MathVista testmini (``AI4Math/MathVista``, config ``default``, split ``testmini``:
    ``data/testmini-*.parquet``). Columns read: ``pid``, ``query`` (the official prompt with
    hint and choices; ``question`` if absent), ``decoded_image`` (else ``image``, a path
    relative to the folder), ``choices``, ``answer``, ``question_type``
    (``multi_choice`` / ``free_form``), ``answer_type`` (``integer`` / ``float`` / ``text``
    / ``list``), ``precision``. Multiple choice: the gold option text becomes its letter;
    integer: exact; float: numeric at ``precision`` decimals (relative 1e-2 without one);
    text / list: normalised exact."""
    items = []
    for row in read_rows(root, split="testmini"):
        where = str(row.get("pid"))
        image = ImageRef(first(row, ("decoded_image", "image"), where), root, where, "image")
        choices = list(row.get("choices") or [])
        answer, qtype = text(get(row, "answer", where)), get(row, "question_type", where)
        atype = get(row, "answer_type", where)
        meta: dict[str, Any] = {}
        if qtype == "multi_choice":
            if answer not in choices:
                raise ValueError(f"record {where!r}: answer {answer!r} is not one of its choices")
            answer, scorer, meta["options"] = LETTERS[choices.index(answer)], "choice", choices
        elif atype in ("integer", "float"):  # integers must match exactly, as MathVista scores
            scorer, meta["precision"] = "number", 0 if atype == "integer" else row.get("precision")
        else:
            scorer = "text"
        question = row.get("query") or get(row, "question", where)
        items.append(EvalItem(where, [image], question, answer, scorer,
                              qtype if qtype == "multi_choice" else atype, meta))
    return items
