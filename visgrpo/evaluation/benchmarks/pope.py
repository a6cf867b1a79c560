"""POPE: the official yes / no parser and accuracy, precision, recall, F1 and yes-ratio per
category (AoiDragon/POPE ``evaluate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring_rules import answer_part, pope_parse
from visgrpo.evaluation.sources import ImageRef, read_rows


def pope_counts(golds: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
    """``evaluate.py:35-62``: accuracy, precision, recall, F1 and the yes ratio, with
    ``yes`` the positive class (a zero denominator gives 0 where the script would raise).
    """
    tp = sum(p == "yes" and g == "yes" for g, p in zip(golds, preds, strict=True))
    fp = sum(p == "yes" and g == "no" for g, p in zip(golds, preds, strict=True))
    tn = sum(p == "no" and g == "no" for g, p in zip(golds, preds, strict=True))
    fn = sum(p == "no" and g == "yes" for g, p in zip(golds, preds, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"acc": (tp + tn) / len(golds), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": preds.count("yes") / len(preds)}


def pope_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                 scores: Sequence[float]) -> dict[str, float]:
    """The official precision, recall, F1 and yes-ratio per category (``adversarial/f1``
    ...) and over all questions (``f1`` ...), from the predictions the official parser
    reads. Accuracy is left out: the accuracy rows (``all`` and per category) already are
    the official accuracy, since the ``pope`` scorer is the official parser.
    """
    preds = [pope_parse(answer_part(c)) for c in completions]
    golds = [str(it.answer) for it in items]
    out = {k: v for k, v in pope_counts(golds, preds).items() if k != "acc"}
    for category in sorted({it.category for it in items}):
        idx = [i for i, it in enumerate(items) if it.category == category]
        sub = pope_counts([golds[i] for i in idx], [preds[i] for i in idx])
        out.update({f"{category}/{k}": v for k, v in sub.items() if k != "acc"})
    return out


@register("pope", scorer="pope", metrics=pope_metrics,
          source="lmms-lab/POPE dataset card (config default, split test); "
                 "AoiDragon/POPE evaluate.py")
def pope(root: Path) -> list[EvalItem]:
    """POPE (``huggingface-cli download --repo-type dataset lmms-lab/POPE``:
    ``data/test-0000k-of-00005.parquet``, 9,000 questions; the ``Full`` config's
    ``adversarial`` / ``popular`` / ``random`` files beside them are not read). Columns
    read: ``question_id``, ``question``, ``answer`` (``yes`` / ``no``), ``image``,
    ``category`` (adversarial / popular / random). Scorer ``pope``: the official parser.
    """
    items = []
    for row in read_rows(root, split="test"):
        where = str(get(row, "question_id", "?"))
        image = ImageRef(get(row, "image", where), root, where, "image")
        answer = text(get(row, "answer", where)).lower()
        if answer not in ("yes", "no"):
            raise ValueError(f"record {where!r}: answer {answer!r} is not yes/no")
        items.append(EvalItem(where, [image], get(row, "question", where), answer, "pope",
                              str(row.get("category") or "yesno")))
    return items
