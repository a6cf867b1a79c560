"""The MMVP benchmark loader (MMVP/MMVP (dataset card); tsb0601/MMVP scripts/evaluate_mllm.py)."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_OPTION = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.S)


def mmvp_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                 scores: Sequence[float]) -> dict[str, float]:
    """MMVP's reported metric: pair accuracy, a pair (questions 1-2, 3-4, ...) counting
    only when both of its questions are right (MMVP paper Sec. 3; gpt_grader.py).
    """
    pairs: dict[int, list[float]] = {}
    for item, s in zip(items, scores, strict=True):
        pairs.setdefault((int(item.meta["index"]) - 1) // 2, []).append(float(s))
    full = [v for v in pairs.values() if len(v) == 2]
    if not full:
        return {}
    return {"pair_accuracy": sum(v[0] * v[1] for v in full) / len(full)}


@register("mmvp", scorer="choice", metrics=mmvp_metrics,
          source="MMVP/MMVP (dataset card); lmms-lab-eval/MMVP (dataset card); tsb0601/MMVP "
                 "scripts/evaluate_mllm.py, gpt_grader.py")
def mmvp(root: Path) -> list[EvalItem]:
    """MMVP, 300 questions in 150 pairs on CLIP-blind image pairs, in either release.

    * ``MMVP/MMVP`` (an image folder): ``Questions.csv`` with ``MMVP Images/<Index>.jpg``;
    * ``lmms-lab-eval/MMVP``: ``data/train-*.parquet`` with the same columns and an
      ``image`` column (this copy corrects the swapped answers of two pairs, e.g. 99/100).

    Columns read: ``Index``, ``Question``, ``Options`` (``"(a) Open (b) Closed"``),
    ``Correct Answer`` (``"(a)"``); the options become ``(A) ...`` lines. Scorer: option
    letter, or the option's text. Composite: pair accuracy (the paper's metric). The
    authors grade with GPT-4; the rule-based letter / text match stands in for it.
    """
    found = sorted(root.rglob("Questions.csv")) if root.is_dir() else []
    if found:
        with found[0].open(newline="", encoding="utf-8") as fh:
            rows = [{k.strip(): v for k, v in r.items() if k} for r in csv.DictReader(fh)]
        base = found[0].parent
    else:
        rows, base = read_rows(root, split="train"), root
    items = []
    for row in rows:
        where = str(get(row, "Index", "?")).strip()
        options = [(m.group(1), m.group(2).strip())
                   for m in _OPTION.finditer(str(get(row, "Options", where)))]
        gold = str(get(row, "Correct Answer", where)).strip().strip("()").lower()
        if len(options) < 2 or gold not in [k for k, _ in options]:
            raise ValueError(f"record {where!r}: Correct Answer {row['Correct Answer']!r} is "
                             f"not one of the options {row['Options']!r}")
        question = get(row, "Question", where).strip() + "\n" + "\n".join(
            f"({k.upper()}) {t}" for k, t in options)
        value = row.get("image") or f"MMVP Images/{where}.jpg"
        items.append(EvalItem(where, [ImageRef(value, base, where, "image")], question,
                              gold.upper(), "choice", "mmvp",
                              {"options": [t for _, t in options], "index": where}))
    return items
