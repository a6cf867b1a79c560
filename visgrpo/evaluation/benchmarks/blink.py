"""The BLINK benchmark loader (BLINK-Benchmark/BLINK (dataset card); zeyofu/BLINK_Benchmark eval/)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import gold_letters
from visgrpo.evaluation.sources import ImageRef, read_rows

SUBTASKS = ("Art_Style", "Counting", "Forensic_Detection", "Functional_Correspondence",
            "IQ_Test", "Jigsaw", "Multi-view_Reasoning", "Object_Localization",
            "Relative_Depth", "Relative_Reflectance", "Semantic_Correspondence",
            "Spatial_Relation", "Visual_Correspondence", "Visual_Similarity")


def blink_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                  scores: Sequence[float]) -> dict[str, float]:
    """BLINK's overall score: the unweighted mean of the sub-task accuracies."""
    by: dict[str, list[float]] = {}
    for item, s in zip(items, scores, strict=True):
        by.setdefault(item.category, []).append(float(s))
    return {"subtask_mean": sum(sum(v) / len(v) for v in by.values()) / len(by)} if by else {}


@register("blink", scorer="choice", metrics=blink_metrics,
          source="BLINK-Benchmark/BLINK (dataset card); zeyofu/BLINK_Benchmark eval/")
def blink(root: Path) -> list[EvalItem]:
    """BLINK ``val`` (``BLINK-Benchmark/BLINK``: one config per sub-task,
    ``<Subtask>/val-00000-of-00001.parquet`` and ``test-*`` whose answers are withheld;
    every sub-task folder found is read, the sub-task is the category). Columns read:
    ``idx``, ``prompt`` (the question with its ``(A) ...`` choices; ``question`` if absent),
    ``choices``, ``answer`` (``"(A)"``), ``image_1`` ... ``image_4`` (the set ones, in
    order). Scorer: option letter (the authors' eval matches the letter and falls back
    to a GPT extraction, not reproduced). Composite: the mean over sub-tasks, the
    paper's overall number.
    """
    folders = [root / s for s in SUBTASKS if (root / s).is_dir()]
    if not folders:
        raise FileNotFoundError(f"{root}: none of BLINK's sub-task folders is here "
                                f"({', '.join(SUBTASKS[:3])}, ...)")
    items = []
    for folder in folders:
        for i, row in enumerate(read_rows(folder, split="val")):
            where = str(row.get("idx") or f"{folder.name}_{i}")
            answer = text(get(row, "answer", where))
            if len(gold_letters(answer)) != 1:
                raise ValueError(f"record {where!r}: answer {answer!r} is not one option letter")
            images = [ImageRef(row[f"image_{k}"], folder, where, f"image_{k}")
                      for k in range(1, 5) if row.get(f"image_{k}") is not None]
            if not images:
                raise ValueError(f"record {where!r}: no image in image_1 ... image_4")
            items.append(EvalItem(where, images, row.get("prompt") or get(row, "question", where),
                                  answer.strip("()"), "choice", folder.name,
                                  {"options": [str(c) for c in row.get("choices") or []]}))
    return items
