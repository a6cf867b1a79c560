"""MathVista testmini, scored by the official rules (lupantech/MathVista)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows


def mathvista_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                      scores: Sequence[float]) -> dict[str, float]:
    """Accuracy per task (``task/figure question answering`` ...) and per math skill
    (``skill/algebraic reasoning`` ...), the breakdowns of the paper's table
    (``calculate_score.py:171-212``: an item counts under every skill it lists).
    """
    groups: dict[str, list[float]] = {}
    for item, score in zip(items, scores, strict=True):
        task = item.meta.get("task")
        if task:
            groups.setdefault(f"task/{task}", []).append(score)
        for skill in item.meta.get("skills") or []:
            groups.setdefault(f"skill/{skill}", []).append(score)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


@register("mathvista_testmini", scorer="mathvista", metrics=mathvista_metrics,
          source="AI4Math/MathVista dataset card (config default, split testmini); "
                 "lupantech/MathVista evaluation/extract_answer.py, calculate_score.py")
def mathvista(root: Path) -> list[EvalItem]:
    """MathVista testmini (``huggingface-cli download --repo-type dataset AI4Math/MathVista``:
    ``data/testmini-00000-of-00001-*.parquet`` beside ``data/test-*.parquet``, which is not
    read; ``images/`` when unpacked). Columns read (dataset card): ``pid``, ``query`` (the
    official prompt with hint and choices; ``question`` if absent), ``decoded_image`` (an
    image struct; else ``image``, a path relative to the folder), ``choices``, ``answer``
    (for multiple choice the option *text*), ``question_type`` (``multi_choice`` /
    ``free_form``), ``answer_type`` (``integer`` / ``float`` / ``text`` / ``list``),
    ``precision``. Scorer ``mathvista``: the official extraction, normalisation and
    ``safe_equal`` (``visgrpo/evaluation/scoring_mathvista.py``). Category: ``multi_choice``
    or the answer type; ``metadata.task`` and ``metadata.skills`` give the per-task and
    per-skill accuracies (:func:`mathvista_metrics`).
    """
    items = []
    for row in read_rows(root, split="testmini"):
        where = str(row.get("pid"))
        image = ImageRef(first(row, ("decoded_image", "image"), where), root, where, "image")
        choices = list(row.get("choices") or [])
        answer, qtype = text(get(row, "answer", where)), get(row, "question_type", where)
        atype = get(row, "answer_type", where)
        if qtype == "multi_choice" and answer not in choices:
            raise ValueError(f"record {where!r}: answer {answer!r} is not one of its choices")
        meta: dict[str, Any] = {"choices": choices or None, "question_type": qtype,
                                "answer_type": atype, "precision": row.get("precision")}
        if qtype == "multi_choice":
            meta["options"] = choices
        info = row.get("metadata") or {}
        if isinstance(info, dict):
            meta.update(task=info.get("task"), skills=list(info.get("skills") or []))
        question = row.get("query") or get(row, "question", where)
        items.append(EvalItem(where, [image], question, answer, "mathvista",
                              qtype if qtype == "multi_choice" else atype, meta))
    return items
