"""The MMMU-Pro benchmark loader (MMMU/MMMU_Pro (dataset card); MMMU-Benchmark/MMMU mmmu-pro/)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.mmmu import (
    literal_list,
    options_block,
    tagged_images,
    untag,
)
from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import LETTERS
from visgrpo.evaluation.sources import ImageRef, read_rows

SETTINGS = ("standard (10 options)", "standard (4 options)", "vision")
# mmmu-pro/prompts.yaml, ``cot``: the instruction each setting's question ends with.
PROMPTS = {
    "standard": "Answer the preceding multiple choice question. The last line of your response "
                "should be of the following format: 'Answer: $LETTER' (without quotes) where "
                "LETTER is one of options. Think step by step before answering.",
    "vision": "Write out the multiple-choice question in the image and then solve it. The last "
              "line of your response should be of the following format: 'Answer: $LETTER' "
              "(without quotes) where LETTER is one of options. Think step by step before "
              "answering.",
}


def mmmu_pro_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                     scores: Sequence[float]) -> dict[str, float]:
    """Per-setting accuracy and MMMU-Pro's headline ``overall``: the mean of the
    ``standard (10 options)`` and ``vision`` accuracies (MMMU-Pro paper, Table 1).
    """
    by: dict[str, list[float]] = {}
    for item, s in zip(items, scores, strict=True):
        by.setdefault(item.category, []).append(float(s))
    out = {k: sum(v) / len(v) for k, v in by.items()}
    if "standard (10 options)" in out and "vision" in out:
        out["overall"] = (out["standard (10 options)"] + out["vision"]) / 2
    return out


@register("mmmu_pro", scorer="mmmu_pro", metrics=mmmu_pro_metrics,
          source="MMMU/MMMU_Pro (dataset card); MMMU-Benchmark/MMMU mmmu-pro/evaluate.py, "
                 "infer/infer_transformers.py, prompts.yaml")
def mmmu_pro(root: Path) -> list[EvalItem]:
    """MMMU-Pro (``MMMU/MMMU_Pro``: configs ``standard (10 options)``, ``standard (4
    options)`` and ``vision``, each a folder of ``test-*.parquet`` shards; every setting
    found under ``root`` is read, the setting is the category). Standard columns: ``id``,
    ``question``, ``options`` (a list as text), ``image_1`` ... ``image_7``, ``answer``
    (a letter), ``subject``; vision: ``id``, ``image`` (question and options are in the
    picture), ``options``, ``answer``. Prompts: the authors' CoT instructions. Scorer:
    MMMU-Pro's parser (``Answer: X`` first).
    """
    items: list[EvalItem] = []
    folders = [(s, root / s) for s in SETTINGS if (root / s).is_dir()]
    if not folders:
        raise FileNotFoundError(f"{root}: none of the MMMU-Pro config folders "
                                f"({', '.join(SETTINGS)}) is here")
    for setting, folder in folders:
        for row in read_rows(folder, split="test"):
            where = f"{setting}/{get(row, 'id', '?')}"
            options = [str(o) for o in literal_list(get(row, "options", where), where, "options")]
            answer = text(get(row, "answer", where))
            if answer not in LETTERS[: len(options)]:
                raise ValueError(f"record {where!r}: answer {answer!r} is not one of its "
                                 f"{len(options)} option letters")
            if setting == "vision":
                images = [ImageRef(get(row, "image", where), folder, where, "image")]
                prompt = PROMPTS["vision"]
            else:
                question = get(row, "question", where)
                images = tagged_images(row, [question, *options], folder, where)
                prompt = f"{question}\n{options_block(options)}\n{PROMPTS['standard']}"
            items.append(EvalItem(where, images, untag(prompt), answer, "mmmu_pro", setting,
                                  {"options": options}))
    return items
