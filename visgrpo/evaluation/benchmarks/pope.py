"""The pope benchmark loader (lmms-lab/POPE; AoiDragon/POPE evaluate.py)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("pope", scorer="yesno",
          source="lmms-lab/POPE; AoiDragon/POPE evaluate.py")
def pope(root: Path) -> list[EvalItem]:
    """POPE (``lmms-lab/POPE``, split ``test``). Columns read: ``question_id``,
    ``question``, ``answer`` (``yes`` / ``no``), ``image``, ``category`` (adversarial /
    popular / random)."""
    items = []
    for row in read_rows(root, split="test"):
        where = str(get(row, "question_id", "?"))
        image = ImageRef(get(row, "image", where), root, where, "image")
        items.append(EvalItem(where, [image], get(row, "question", where),
                              text(get(row, "answer", where)).lower(), "yesno",
                              str(row.get("category") or "yesno")))
    return items
