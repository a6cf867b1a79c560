"""The hallusionbench benchmark loader (lmms-lab/HallusionBench; tianyi-lab/HallusionBench)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("hallusionbench", scorer="yesno",
          source="lmms-lab/HallusionBench; tianyi-lab/HallusionBench")
def hallusionbench(root: Path) -> list[EvalItem]:
    """HallusionBench (``lmms-lab/HallusionBench``, split ``image``; or the authors'
    ``HallusionBench.json`` with ``filename`` paths). Columns read: ``category``
    (``VD`` / ``VS``), ``subcategory``, ``set_id``, ``figure_id``, ``question_id``,
    ``question``, ``gt_answer`` (``"1"`` = yes, ``"0"`` = no), ``image`` or ``filename``;
    ``visual_input == "0"`` questions are asked without the image."""
    items = []
    for i, row in enumerate(read_rows(root, split="image", prefer=("HallusionBench.json",))):
        where = "_".join(str(row.get(k)) for k in ("category", "subcategory", "set_id",
                                                   "figure_id", "question_id")) or str(i)
        images = []
        if str(row.get("visual_input", "1")) != "0":
            value = first(row, ("image", "filename"), where)
            images = [ImageRef(value, root, where, "image")]
        gt = text(get(row, "gt_answer", where))
        if gt not in ("0", "1"):
            raise ValueError(f"record {where!r}: gt_answer {gt!r} is not '0' or '1'")
        items.append(EvalItem(where, images, get(row, "question", where),
                              "yes" if gt == "1" else "no", "yesno",
                              str(row.get("category") or "yesno")))
    return items
