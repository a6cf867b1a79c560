"""The DynaMath benchmark loader (DynaMath/DynaMath_Sample (dataset card); DynaMath/DynaMath evaluation/)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import first, get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_VARIANT = re.compile(r"^sample(?:_variant)?(\d+)-")
ANSWER_TYPES = ("float", "multiple choice", "free form")


def dynamath_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                     scores: Sequence[float]) -> dict[str, float]:
    """DynaMath's two numbers: average-case accuracy (all concrete questions) and
    worst-case accuracy (a seed question counts only when every variant of it present is
    right; paper Sec. 4.1).
    """
    seeds: dict[str, list[float]] = {}
    for item, s in zip(items, scores, strict=True):
        seeds.setdefault(str(item.meta["seed"]), []).append(float(s))
    if not seeds:
        return {}
    return {"average_case": sum(scores) / len(scores),
            "worst_case": sum(min(v) for v in seeds.values()) / len(seeds)}


@register("dynamath", scorer="dynamath", metrics=dynamath_metrics,
          source="DynaMath/DynaMath_Sample (dataset card); DynaMath/DynaMath "
                 "evaluation/opensource_json_eval.py")
def dynamath(root: Path) -> list[EvalItem]:
    """DynaMath (``DynaMath/DynaMath_Sample``: splits ``sample_variant1`` ...
    ``sample_variant10``, each ``data/sample<k>-*.parquet`` (older snapshots
    ``data/sample_variant<k>-*``); 501 seed questions x 10 variants; the
    ``10VariationSamples.zip`` beside is not read). Columns read: ``id`` (the seed
    question), ``question``, ``decoded_image`` (else ``image``), ``ground_truth``,
    ``answer_type`` (``float`` / ``multiple choice`` / ``free form``), ``subject`` (the
    category). Item ids are ``<variant>/<id>``. Scorer: DynaMath's comparison by answer
    type. Composite: average-case and worst-case accuracy.
    """
    files = sorted((p for p in root.rglob("*.parquet") if _VARIANT.match(p.name)),
                   key=lambda p: (int(_VARIANT.match(p.name).group(1)), p.name))
    if not files:
        raise FileNotFoundError(f"{root}: no DynaMath variant shards (data/sample<k>-*.parquet)")
    items = []
    for path in files:
        variant = int(_VARIANT.match(path.name).group(1))
        for row in read_rows(path):
            seed = str(get(row, "id", "?"))
            where = f"{variant}/{seed}"
            atype = str(get(row, "answer_type", where))
            if atype not in ANSWER_TYPES:
                raise ValueError(f"record {where!r}: answer_type {atype!r} is not one of "
                                 f"{', '.join(ANSWER_TYPES)}")
            question = get(row, "question", where)
            if atype == "float":  # opensource_json_eval.py L82-83
                question += "Please answer in a floating-point number."
            image = ImageRef(first(row, ("decoded_image", "image"), where), root, where, "image")
            items.append(EvalItem(where, [image], question, text(get(row, "ground_truth", where)),
                                  "dynamath", str(row.get("subject") or "dynamath"),
                                  {"answer_type": atype, "seed": seed, "variant": variant}))
    return items
