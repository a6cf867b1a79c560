"""The refcoco benchmark loader (lmms-lab/RefCOCO; jxu124/refcoco)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("refcoco", scorer="box",
          source="lmms-lab/RefCOCO; jxu124/refcoco")
def refcoco(root: Path) -> list[EvalItem]:
    """RefCOCO referring-expression grounding, one item per expression, in either release:

    * ``lmms-lab/RefCOCO`` (splits ``val`` / ``testA`` / ``testB``): ``question_id``,
      ``image``, ``answer`` (the list of referring expressions), ``bbox`` (COCO
      ``[x, y, w, h]`` pixels);
    * ``jxu124/refcoco``: ``ref_id``, ``sentences`` (``[{"sent": ...}, ...]``), ``bbox``
      (``[x0, y0, x1, y1]`` pixels), ``image_path`` (relative to the folder, e.g.
      ``coco/train2014/...jpg``).

    The question is the expression; the runner adds the model family's coordinate
    instruction. Scorer: IoU >= 0.5 in original pixels.
    """
    items = []
    for i, row in enumerate(read_rows(root, split="val")):
        if "sentences" in row:  # jxu124
            where = str(row.get("ref_id", i))
            exprs = [s["sent"] if isinstance(s, dict) else str(s) for s in row["sentences"]]
            x0, y0, x1, y1 = (float(v) for v in get(row, "bbox", where))
            image = ImageRef(get(row, "image_path", where), root, where, "image_path")
        else:  # lmms-lab
            where = str(get(row, "question_id", str(i)))
            exprs = row.get("answer")
            exprs = [exprs] if isinstance(exprs, str) else list(exprs or [])
            x, y, w, h = (float(v) for v in get(row, "bbox", where))
            x0, y0, x1, y1 = x, y, x + w, y + h
            image = ImageRef(get(row, "image", where), root, where, "image")
        if not exprs:
            raise ValueError(f"record {where!r}: no referring expression")
        for k, expr in enumerate(exprs):
            items.append(EvalItem(f"{where}#{k}", [image], str(expr).strip(),
                                  [x0, y0, x1, y1], "box", "grounding"))
    return items

