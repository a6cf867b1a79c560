"""Geometry3K test, scored by math-verify."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("geometry3k", scorer="math",
          source="hiyouga/geometry3k dataset card (split test)")
def geometry3k(root: Path) -> list[EvalItem]:
    """Geometry3K (``huggingface-cli download --repo-type dataset hiyouga/geometry3k``:
    ``data/test-*.parquet`` read; train and validation not). Columns read: ``images`` (a list
    of one image), ``problem`` (with an ``<image>`` marker, removed: the chat template
    places the image), ``answer``. Scorer: math-verify.
    """
    items = []
    for i, row in enumerate(read_rows(root, split="test")):
        where = str(row.get("id", i))
        images = [ImageRef(v, root, where, "images") for v in get(row, "images", where)]
        problem = get(row, "problem", where).replace("<image>", "").strip()
        items.append(EvalItem(where, images, problem, text(get(row, "answer", where)),
                              "math", "free-form"))
    return items
