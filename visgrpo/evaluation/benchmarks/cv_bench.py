"""The CV-Bench benchmark loader (nyu-visionx/CV-Bench (dataset card, its accuracy recipe))."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import gold_letters
from visgrpo.evaluation.sources import ImageRef, read_rows


def cv_bench_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                     scores: Sequence[float]) -> dict[str, float]:
    """The dataset card's recipe: accuracy per ``source``; ``2d`` = mean of ADE20K and
    COCO, ``3d`` = Omni3D, ``overall`` = mean of ``2d`` and ``3d``.
    """
    by: dict[str, list[float]] = {}
    for item, s in zip(items, scores, strict=True):
        by.setdefault(str(item.meta.get("source")), []).append(float(s))
    acc = {k: sum(v) / len(v) for k, v in by.items()}
    out = {f"source/{k}": v for k, v in acc.items()}
    if "ADE20K" in acc and "COCO" in acc:
        out["2d"] = (acc["ADE20K"] + acc["COCO"]) / 2
    if "Omni3D" in acc:
        out["3d"] = acc["Omni3D"]
    if "2d" in out and "3d" in out:
        out["overall"] = (out["2d"] + out["3d"]) / 2
    return out


@register("cv_bench", scorer="choice", metrics=cv_bench_metrics,
          source="nyu-visionx/CV-Bench (dataset card: files, columns and accuracy recipe)")
def cv_bench(root: Path) -> list[EvalItem]:
    """CV-Bench (``nyu-visionx/CV-Bench``: ``test_2d.parquet`` and ``test_3d.parquet``
    at the top (older snapshots: one ``test.parquet``), with ``img/`` and ``*.jsonl``
    copies beside; 2,638 rows). Columns read: ``idx``, ``type`` (2D / 3D), ``task``
    (Count, Relation, Depth, Distance: the category), ``source`` (ADE20K, COCO, Omni3D),
    ``prompt`` (the question with its ``(A) ...`` choices; ``question`` if absent),
    ``choices``, ``answer`` (``"(B)"``), ``image`` (else ``filename`` under ``img/``).
    Scorer: option letter. Composite: the card's 2D / 3D / overall recipe.
    """
    files = sorted(root.glob("test_[23]d.parquet")) if root.is_dir() else []
    rows = [r for f in files for r in read_rows(f)] if files else read_rows(root, split="test")
    items = []
    for i, row in enumerate(rows):
        where = f"{row.get('type', '')}_{row.get('idx', i)}"
        answer = text(get(row, "answer", where))
        if len(gold_letters(answer)) != 1:
            raise ValueError(f"record {where!r}: answer {answer!r} is not one option letter")
        image = ImageRef(first(row, ("image", "filename"), where), root, where, "image")
        items.append(EvalItem(where, [image], first(row, ("prompt", "question"), where),
                              answer.strip("()"), "choice", str(row.get("task") or "cv_bench"),
                              {"options": [str(c) for c in row.get("choices") or []],
                               "source": str(get(row, "source", where))}))
    return items
