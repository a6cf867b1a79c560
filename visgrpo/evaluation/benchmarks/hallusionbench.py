"""HallusionBench: both splits, yes / no answers, and the official question, figure and
question-pair accuracies (tianyi-lab/HallusionBench ``utils.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_KEYS = ("category", "subcategory", "set_id", "figure_id", "question_id")


def _all_correct(groups: dict[str, list[bool]]) -> float:
    return sum(all(v) for v in groups.values()) / len(groups) if groups else 0.0


def hallusionbench_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                           scores: Sequence[float]) -> dict[str, float]:
    """``aAcc``: correct questions / questions (``utils.py`` ``get_eval_all``); ``fAcc``:
    figures whose questions are all correct (``get_eval_fig``: key category_subcategory_
    set_figure, VS questions without a figure skipped); ``qAcc``: question pairs (the same
    question over the original and the edited figures: key category_subcategory_set_
    question) all correct (``get_eval_pair_all``); ``easy`` / ``hard``: the same over the
    questions on the original figure (``figure_id`` 0) / on the edited ones
    (``get_eval_pair_easy`` / ``get_eval_pair_hard``), the leaderboard's "Acc per easy /
    hard question" (``evaluation.py``).
    """
    figures: dict[str, list[bool]] = {}
    pairs: dict[str, list[bool]] = {}
    easy: dict[str, list[bool]] = {}
    hard: dict[str, list[bool]] = {}
    for item, score in zip(items, scores, strict=True):
        m, ok = item.meta, score >= 1.0
        if not (m["category"] == "VS" and m["figure_id"] == "0"):
            key = "_".join((m["category"], m["subcategory"], m["set_id"], m["figure_id"]))
            figures.setdefault(key, []).append(ok)
        key = "_".join((m["category"], m["subcategory"], m["set_id"], m["question_id"]))
        pairs.setdefault(key, []).append(ok)
        (easy if m["figure_id"] == "0" else hard).setdefault(key, []).append(ok)
    return {"aAcc": sum(s >= 1.0 for s in scores) / len(scores),
            "fAcc": _all_correct(figures), "qAcc": _all_correct(pairs),
            "easy": _all_correct(easy), "hard": _all_correct(hard)}


@register("hallusionbench", scorer="yorn", metrics=hallusionbench_metrics,
          source="lmms-lab/HallusionBench dataset card (splits image, non_image); "
                 "tianyi-lab/HallusionBench utils.py; VLMEvalKit yorn.py (YOrN_Extraction)")
def hallusionbench(root: Path) -> list[EvalItem]:
    """HallusionBench, both splits (``huggingface-cli download --repo-type dataset
    lmms-lab/HallusionBench``: ``data/image-*.parquet``, 951 questions with an image, and
    ``data/non_image-*.parquet``, 178 asked without one; or the authors'
    ``HallusionBench.json`` with ``filename`` paths, which holds both). Columns read:
    ``category`` (``VD`` / ``VS``), ``subcategory``, ``set_id``, ``figure_id``,
    ``question_id``, ``visual_input`` (``"0"``: asked without the image), ``question``,
    ``gt_answer`` (``"1"`` = yes, ``"0"`` = no), ``image`` or ``filename``. Scorer ``yorn``
    (VLMEvalKit's yes / no extraction; the official correctness is a GPT-4 judge).
    """
    authors = sorted(root.rglob("HallusionBench.json")) if root.is_dir() else []
    if authors:
        rows = read_rows(authors[0])
    else:
        rows = (read_rows(root, split="image", strict=True)
                + read_rows(root, split="non_image", strict=True))
        rows = rows or read_rows(root)  # a single-file copy named after neither split
    items = []
    for i, row in enumerate(rows):
        meta = {k: text(row.get(k)) if row.get(k) is not None else "" for k in _KEYS}
        where = "_".join(meta.values()) if any(meta.values()) else str(i)
        images = []
        if str(row.get("visual_input", "1")) != "0":
            value = first(row, ("image", "filename"), where)
            images = [ImageRef(value, root, where, "image")]
        gt = text(get(row, "gt_answer", where))
        if gt not in ("0", "1"):
            raise ValueError(f"record {where!r}: gt_answer {gt!r} is not '0' or '1'")
        items.append(EvalItem(where, images, get(row, "question", where),
                              "yes" if gt == "1" else "no", "yorn",
                              meta["category"] or "yesno", meta))
    return items
