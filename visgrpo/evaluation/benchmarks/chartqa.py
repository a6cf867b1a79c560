"""The ChartQA benchmark loader (lmms-lab/ChartQA (dataset card); google-research/pix2struct metrics.py)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("chartqa", scorer="relaxed",
          source="lmms-lab/ChartQA (dataset card); google-research/pix2struct "
                 "pix2struct/metrics.py relaxed_correctness; lmms-eval tasks/chartqa/utils.py")
def chartqa(root: Path) -> list[EvalItem]:
    """ChartQA ``test`` (``lmms-lab/ChartQA``: ``data/test-00000-of-00001.parquet``, 2,500
    rows: 1,250 ``human_test`` and 1,250 ``augmented_test``). Columns read: ``type`` (the
    category), ``question``, ``answer``, ``image``; the id is the row index. The headline
    number is the relaxed accuracy over all rows (lmms-eval's ``relaxed_overall``), with
    the two splits as categories. Scorer: relaxed accuracy (5% for numbers)."""
    items = []
    for i, row in enumerate(read_rows(root, split="test")):
        where = str(row.get("id", i))
        image = ImageRef(get(row, "image", where), root, where, "image")
        items.append(EvalItem(where, [image], get(row, "question", where),
                              text(get(row, "answer", where)), "relaxed",
                              str(row.get("type") or "chartqa")))
    return items
