"""RefCOCO, RefCOCO+ and RefCOCOg referring-expression grounding, every split (one
registry entry per dataset and split: ``refcoco`` is RefCOCO val).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

# dataset -> its splits (lmms-lab/RefCOCO, lmms-lab/RefCOCOplus, lmms-lab/RefCOCOg dataset cards)
SPLITS = {"refcoco": ("val", "test", "testA", "testB"),
          "refcocoplus": ("val", "testA", "testB"),
          "refcocog": ("val", "test")}
_ALIASES = {"val": ("val", "validation")}  # jxu124/* name the validation split "validation"
_REPOS = {"refcoco": "RefCOCO", "refcocoplus": "RefCOCOplus", "refcocog": "RefCOCOg"}


def _split_rows(root: Path, split: str) -> list[dict]:
    for name in _ALIASES.get(split, (split,)):
        rows = read_rows(root, split=name, strict=True)
        if rows:
            return rows
    raise FileNotFoundError(f"{root}: no files of split {split!r} (data/{split}-*.parquet)")


def load_refcoco(root: Path, split: str = "val") -> list[EvalItem]:
    """Referring-expression grounding, one item per expression, in either release.

    * ``lmms-lab/RefCOCO`` / ``RefCOCOplus`` / ``RefCOCOg`` (``huggingface-cli download
      --repo-type dataset lmms-lab/RefCOCO``: ``data/<split>-0000k-of-0000n.parquet``;
      dataset card features): ``question_id``, ``image`` (struct), ``answer`` (the list of
      referring expressions), ``bbox`` (COCO ``[x, y, w, h]`` pixels);
    * ``jxu124/refcoco`` / ``refcocoplus`` / ``refcocog`` (``data/<split>-*.parquet``, the
      val split named ``validation``): ``ref_id``, ``sentences`` (``[{"sent": ...}]``),
      ``bbox`` (``[x0, y0, x1, y1]`` pixels), ``image_path`` (relative to the folder, e.g.
      ``coco/train2014/...jpg``) or ``image``.

    Only the files of ``split`` are read (``test`` does not read ``testA``). The question
    is the expression; the runner adds the model family's coordinate instruction. Scorer:
    IoU >= 0.5 in original pixels.
    """
    items = []
    for i, row in enumerate(_split_rows(root, split)):
        if "sentences" in row:  # jxu124
            where = str(row.get("ref_id", i))
            exprs = [s["sent"] if isinstance(s, dict) else str(s) for s in row["sentences"]]
            x0, y0, x1, y1 = (float(v) for v in get(row, "bbox", where))
            value = row.get("image") or get(row, "image_path", where)
            image = ImageRef(value, root, where, "image_path")
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


for _dataset, _splits in SPLITS.items():
    for _split in _splits:
        _name = "refcoco" if (_dataset, _split) == ("refcoco", "val") else f"{_dataset}_{_split}"
        register(_name, scorer="box",
                 source=f"lmms-lab/{_REPOS[_dataset]} dataset card (split {_split}); "
                        f"jxu124/{_dataset}")(partial(load_refcoco, split=_split))
