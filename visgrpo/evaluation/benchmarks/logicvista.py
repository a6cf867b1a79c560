"""LogicVista: letter sets, numbers and empty answers, matched as the authors' evaluation
matches them (Yijia-Xiao/LogicVista ``eval/extract_accuracy_new.py``)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("logicvista", scorer="logicvista",
          source="Yijia-Xiao/LogicVista data/dataset.json, data/images/; "
                 "eval/extract_accuracy_new.py, eval/analyze_accuracy.py")
def logicvista(root: Path) -> list[EvalItem]:
    """LogicVista (the authors' repository's ``data/`` folder: ``dataset.json`` is
    ``{"v1_0": {"imagename": "v1_0.png", "question", "answer", "skill", "capability"}, ...}``
    with the images in ``data/images/``; a parquet release with ``question``, ``answer``,
    ``image``, ``skill`` is read too). The question holds its options. ``answer`` is what
    the authors' scorer compares with (``extract_accuracy_new.py:141``): one letter, several
    (``"A, C"``: the same set is needed), a number (``"3"``) or empty (``""``: only an empty
    response matches). Category: the first reasoning ``skill`` (the official table is per
    skill: inductive, deductive, numerical, spatial, mechanical)."""
    items = []
    for i, row in enumerate(read_rows(root, prefer=("dataset.json",))):
        where = str(row.get("_key", row.get("id", i)))
        value = row.get("image") or get(row, "imagename", where)
        if isinstance(value, str) and "/" not in value:
            value = f"images/{value}"
        image = ImageRef(value, root, where, "image")
        skill = row.get("skill")
        skill = skill[0] if isinstance(skill, list) and skill else skill
        answer = row.get("answer", ...)
        if answer is ...:
            raise ValueError(f"record {where!r}: column 'answer' is missing")
        items.append(EvalItem(where, [image], get(row, "question", where),
                              "" if answer is None else text(answer), "logicvista",
                              str(skill or "all")))
    return items
