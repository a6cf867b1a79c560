"""The ChartQA benchmark loader (lmms-lab/ChartQA (dataset card); google-research/pix2struct metrics.py)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_SPLIT_OF = {0: "human_test", 1: "augmented_test", "human": "human_test",
             "machine": "augmented_test"}


@register("chartqa", scorer="relaxed",
          source="lmms-lab/ChartQA, HuggingFaceM4/ChartQA (dataset cards); google-research/"
                 "pix2struct pix2struct/metrics.py relaxed_correctness; lmms-eval tasks/chartqa")
def chartqa(root: Path) -> list[EvalItem]:
    """ChartQA ``test`` (2,500 rows: 1,250 human-written, 1,250 augmented), in either release.

    * ``lmms-lab/ChartQA``: ``data/test-00000-of-00001.parquet`` with ``type``
      (``human_test`` / ``augmented_test``), ``question``, ``answer``, ``image``;
    * ``HuggingFaceM4/ChartQA``: ``data/test-*.parquet`` (beside ``train`` and ``val``,
      skipped) with ``query``, ``label`` (a list of one answer), ``human_or_machine``
      (0 = human, 1 = machine), ``image``.

    The id is the row index; the split is the category. The headline number is the
    relaxed accuracy over all rows (lmms-eval's ``relaxed_overall``). Scorer: relaxed
    accuracy (5% for numbers).
    """
    items = []
    for i, row in enumerate(read_rows(root, split="test")):
        where = str(row.get("id", i))
        image = ImageRef(get(row, "image", where), root, where, "image")
        answer = first(row, ("answer", "label"), where)
        if isinstance(answer, list):
            if not answer:
                raise ValueError(f"record {where!r}: column 'label' is empty")
            answer = answer[0]
        kind = row.get("type") or _SPLIT_OF.get(row.get("human_or_machine"), "chartqa")
        items.append(EvalItem(where, [image], first(row, ("question", "query"), where),
                              text(answer), "relaxed", str(kind)))
    return items
