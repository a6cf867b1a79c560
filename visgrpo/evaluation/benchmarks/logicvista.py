"""LogicVista: letter sets, numbers and empty answers, matched as the authors' evaluation
matches them (Yijia-Xiao/LogicVista ``eval/extract_accuracy_new.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

SKILLS = ("inductive", "deductive", "numerical", "spatial", "mechanical")
CAPABILITIES = ("diagram", "ocr")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def logicvista_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                       scores: Sequence[float]) -> dict[str, float]:
    """The authors' table (``eval/analyze_accuracy.py``): accuracy per reasoning skill
    (``skill/inductive`` ...) and per capability (``capability/diagram``,
    ``capability/ocr``, ``capability/diagram_and_ocr``), an item counted under every skill and
    capability it lists (``str.contains``).
    """
    def acc(keep) -> float | None:
        hit = [s >= 1.0 for it, s in zip(items, scores, strict=True) if keep(it.meta)]
        return sum(hit) / len(hit) if hit else None

    out = {f"skill/{k}": acc(lambda m, k=k: any(k in s for s in m["skills"])) for k in SKILLS}
    for k in CAPABILITIES:
        out[f"capability/{k}"] = acc(lambda m, k=k: any(k in c for c in m["capabilities"]))
    out["capability/diagram_and_ocr"] = acc(
        lambda m: all(any(k in c for c in m["capabilities"]) for k in CAPABILITIES))
    return {k: v for k, v in out.items() if v is not None}


@register("logicvista", scorer="logicvista", metrics=logicvista_metrics,
          source="Yijia-Xiao/LogicVista data/dataset.json, data/images/; "
                 "eval/extract_accuracy_new.py, eval/analyze_accuracy.py")
def logicvista(root: Path) -> list[EvalItem]:
    """LogicVista (the authors' repository's ``data/`` folder: ``dataset.json`` is
    ``{"v1_0": {"imagename": "v1_0.png", "question", "answer", "skill", "capability"}, ...}``
    with the images in ``data/images/``; a parquet release with ``question``, ``answer``,
    ``image``, ``skill`` is read too). The question holds its options. ``answer`` is what
    the authors' scorer compares with (``extract_accuracy_new.py:141``): one letter, several
    (``"A, C"``: the same set is needed), a number (``"3"``) or empty (``""``: only an empty
    response matches). The official per-skill and per-capability table comes from
    :func:`logicvista_metrics` (``skill`` and ``capability`` are lists).
    """
    items = []
    for i, row in enumerate(read_rows(root, prefer=("dataset.json",))):
        where = str(row.get("_key", row.get("id", i)))
        value = row.get("image") or get(row, "imagename", where)
        if isinstance(value, str) and "/" not in value:
            value = f"images/{value}"
        image = ImageRef(value, root, where, "image")
        meta = {"skills": _as_list(row.get("skill")),
                "capabilities": _as_list(row.get("capability"))}
        answer = row.get("answer", ...)
        if answer is ...:
            raise ValueError(f"record {where!r}: column 'answer' is missing")
        items.append(EvalItem(where, [image], get(row, "question", where),
                              "" if answer is None else text(answer), "logicvista",
                              "reasoning", meta))  # one category: the table shows "all"
    return items
