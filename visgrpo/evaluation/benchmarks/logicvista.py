"""The logicvista benchmark loader (Yijia-Xiao/LogicVista data/dataset.json and evaluation)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("logicvista", scorer="choice",
          source="Yijia-Xiao/LogicVista data/dataset.json and evaluation")
def logicvista(root: Path) -> list[EvalItem]:
    """LogicVista (the authors' ``dataset.json`` from their ``data`` folder: ``{id: {imagename, question,
    answer, skill, ...}}`` with images in ``data/images/``; or the Hugging Face parquet with
    ``question``, ``answer``, ``image``, ``skill``). The question holds its options;
    ``answer`` is one letter or several (``"A, C"``: the same set is needed). Category:
    the first ``skill``."""
    items = []
    for i, row in enumerate(read_rows(root, prefer=("dataset.json",))):
        where = str(row.get("_key", row.get("id", i)))
        value = row.get("image") or get(row, "imagename", where)
        if isinstance(value, str) and "/" not in value:
            value = f"images/{value}"
        image = ImageRef(value, root, where, "image")
        skill = row.get("skill")
        skill = skill[0] if isinstance(skill, list) and skill else skill
        items.append(EvalItem(where, [image], get(row, "question", where),
                              text(get(row, "answer", where)), "choice", str(skill or "choice")))
    return items
