"""The CLEVR counting benchmark loader (BUAADreamer/clevr_count_70k, PAPO's "SuperClevr" column)."""

from __future__ import annotations

from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


@register("clevr_count", scorer="math",
          source="BUAADreamer/clevr_count_70k (dataset card); MikeWangWZHL/PAPO README "
                 "(evaluation data); hiyouga/EasyR1 examples/reward_function/math.py (mathruler grade_answer)")
def clevr_count(root: Path) -> list[EvalItem]:
    """CLEVR counting ``test`` (``BUAADreamer/clevr_count_70k``: ``data/test-00000-of-
    00001.parquet``, 200 rows, beside 21 ``train`` shards that are not read). The set
    PAPO and VGPO report as "SuperClevr (counting)". Columns read (EasyR1 layout):
    ``images`` (a list of one image; ``image`` also accepted), ``problem`` (with an
    ``<image>`` marker, removed; ``question`` also accepted), ``answer`` (an integer).
    Scorer: math-verify equivalence of the answer and the count (as the EasyR1 reward
    PAPO trains and evaluates with: ``"10.0"`` is 10, ``"10.4"`` is not).
    """
    items = []
    for i, row in enumerate(read_rows(root, split="test")):
        where = str(row.get("id", i))
        value = first(row, ("images", "image"), where)
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError(f"record {where!r}: column 'images' is empty")
        images = [ImageRef(v, root, where, "images") for v in values]
        answer = text(get(row, "answer", where))
        if not answer.lstrip("-").isdigit():
            raise ValueError(f"record {where!r}: answer {answer!r} is not an integer count")
        question = first(row, ("problem", "question"), where).replace("<image>", "").strip()
        items.append(EvalItem(where, images, question, answer, "math", "counting"))
    return items
