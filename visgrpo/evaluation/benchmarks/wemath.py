"""The wemath benchmark loader (We-Math/We-Math (dataset card); We-Math/We-Math evaluation/)."""

from __future__ import annotations

import re
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_STEPS = re.compile(r"^(\d)steps", re.I)


@register("wemath", scorer="choice",
          source="We-Math/We-Math (dataset card); We-Math/We-Math evaluation/")
def wemath(root: Path) -> list[EvalItem]:
    """We-Math testmini (``We-Math/We-Math``: ``testmini.json`` plus the unpacked image
    archive). Columns read: ``ID`` (``1steps_...``: the one-/two-/three-step category),
    ``question``, ``option`` (``"A. ...; B. ..."``), ``answer`` (a letter), ``image_path``
    (relative to the folder; an ``image`` column is used instead when present)."""
    items = []
    for row in read_rows(root, split="testmini", prefer=("testmini.json",)):
        where = str(get(row, "ID", "?"))
        image = ImageRef(first(row, ("image", "image_path"), where), root, where, "image_path")
        steps = _STEPS.match(where)
        question = f"{get(row, 'question', where)}\nOptions: {get(row, 'option', where)}"
        items.append(EvalItem(where, [image], question, text(get(row, "answer", where)),
                              "choice", f"{steps.group(1)}-step" if steps else "choice"))
    return items
