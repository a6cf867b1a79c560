"""MMStar, scored by option letter (or option text)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("mmstar", scorer="choice",
          source="Lin-Chen/MMStar dataset card (mmstar.parquet, split val)")
def mmstar(root: Path) -> list[EvalItem]:
    """MMStar (``huggingface-cli download --repo-type dataset Lin-Chen/MMStar``: the
    top-level ``mmstar.parquet``, split ``val``). Columns read: ``index``, ``question``
    (with its ``Options: A: ...``), ``image``, ``answer`` (a letter), ``category``.
    """
    items = []
    for row in read_rows(root, split="val"):
        where = str(get(row, "index", "?"))
        image = ImageRef(get(row, "image", where), root, where, "image")
        items.append(EvalItem(where, [image], get(row, "question", where),
                              text(get(row, "answer", where)), "choice",
                              str(row.get("category") or "choice")))
    return items
