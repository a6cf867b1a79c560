"""One loader per benchmark, for the schema its Hugging Face release publishes.

Each loader reads a local copy (visgrpo/evaluation/sources.py: parquet / JSON / arrow,
images embedded or as files beside) and returns :class:`EvalItem` s. The schema each one
follows is in its docstring; a missing column is one line naming the record and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import LETTERS
from visgrpo.evaluation.sources import ImageRef, read_rows

Loader = Callable[[Path], list[EvalItem]]
BENCHMARKS: dict[str, Loader] = {}


def register(name: str):
    def deco(fn: Loader) -> Loader:
        BENCHMARKS[name] = fn
        return fn

    return deco


def _get(row: dict, key: str, where: str, default: Any = ...) -> Any:
    value = row.get(key, default)
    if value is ... or (value is None and default is ...):
        raise ValueError(f"record {where!r}: column {key!r} is missing")
    return value


def _first(row: dict, keys: tuple[str, ...], where: str) -> Any:
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    raise ValueError(f"record {where!r}: none of the columns {', '.join(keys)} is set")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@register("mathvista_testmini")
def mathvista(root: Path) -> list[EvalItem]:
    """MathVista testmini (``AI4Math/MathVista``, config ``default``, split ``testmini``:
    ``data/testmini-*.parquet``). Columns read: ``pid``, ``query`` (the official prompt with
    hint and choices; ``question`` if absent), ``decoded_image`` (else ``image``, a path
    relative to the folder), ``choices``, ``answer``, ``question_type``
    (``multi_choice`` / ``free_form``), ``answer_type`` (``integer`` / ``float`` / ``text``
    / ``list``), ``precision``. Multiple choice: the gold option text becomes its letter;
    integer: exact; float: numeric at ``precision`` decimals (relative 1e-2 without one);
    text / list: normalised exact."""
    items = []
    for row in read_rows(root, split="testmini"):
        where = str(row.get("pid"))
        image = ImageRef(_first(row, ("decoded_image", "image"), where), root, where, "image")
        choices = list(row.get("choices") or [])
        answer, qtype = _text(_get(row, "answer", where)), _get(row, "question_type", where)
        atype = _get(row, "answer_type", where)
        meta: dict[str, Any] = {}
        if qtype == "multi_choice":
            if answer not in choices:
                raise ValueError(f"record {where!r}: answer {answer!r} is not one of its choices")
            answer, scorer, meta["options"] = LETTERS[choices.index(answer)], "choice", choices
        elif atype in ("integer", "float"):  # integers must match exactly, as MathVista scores
            scorer, meta["precision"] = "number", 0 if atype == "integer" else row.get("precision")
        else:
            scorer = "text"
        question = row.get("query") or _get(row, "question", where)
        items.append(EvalItem(where, [image], question, answer, scorer,
                              qtype if qtype == "multi_choice" else atype, meta))
    return items


@register("mathverse_testmini")
def mathverse(root: Path) -> list[EvalItem]:
    """MathVerse testmini (``AI4Math/MathVerse``, config ``testmini``). Columns read:
    ``sample_index``, ``problem_version`` (Text Dominant ... Vision Only: the category),
    ``question_type`` (``multi-choice`` / ``free-form``), ``query_cot`` (the official CoT
    prompt; ``question`` if absent), ``image``, ``answer``. Multiple choice: option letter;
    free form: math-verify."""
    items = []
    for row in read_rows(root, split="testmini"):
        where = str(_first(row, ("sample_index", "problem_index"), "?"))
        image = ImageRef(_get(row, "image", where), root, where, "image")
        multi = str(_get(row, "question_type", where)).startswith("multi")
        items.append(EvalItem(
            where, [image], row.get("query_cot") or _get(row, "question", where),
            _text(_get(row, "answer", where)), "choice" if multi else "math",
            str(row.get("problem_version") or ("multi-choice" if multi else "free-form")),
        ))
    return items


@register("geometry3k")
def geometry3k(root: Path) -> list[EvalItem]:
    """Geometry3K (``hiyouga/geometry3k``, split ``test``). Columns read: ``images`` (a list
    of one image), ``problem`` (with an ``<image>`` marker, removed: the chat template
    places the image), ``answer``. Scorer: math-verify."""
    items = []
    for i, row in enumerate(read_rows(root, split="test")):
        where = str(row.get("id", i))
        images = [ImageRef(v, root, where, "images") for v in _get(row, "images", where)]
        problem = _get(row, "problem", where).replace("<image>", "").strip()
        items.append(EvalItem(where, images, problem, _text(_get(row, "answer", where)),
                              "math", "free-form"))
    return items


_STEPS = re.compile(r"^(\d)steps", re.I)


@register("wemath")
def wemath(root: Path) -> list[EvalItem]:
    """We-Math testmini (``We-Math/We-Math``: ``testmini.json`` plus the unpacked image
    archive). Columns read: ``ID`` (``1steps_...``: the one-/two-/three-step category),
    ``question``, ``option`` (``"A. ...; B. ..."``), ``answer`` (a letter), ``image_path``
    (relative to the folder; an ``image`` column is used instead when present)."""
    items = []
    for row in read_rows(root, split="testmini", prefer=("testmini.json",)):
        where = str(_get(row, "ID", "?"))
        image = ImageRef(_first(row, ("image", "image_path"), where), root, where, "image_path")
        steps = _STEPS.match(where)
        question = f"{_get(row, 'question', where)}\nOptions: {_get(row, 'option', where)}"
        items.append(EvalItem(where, [image], question, _text(_get(row, "answer", where)),
                              "choice", f"{steps.group(1)}-step" if steps else "choice"))
    return items


@register("logicvista")
def logicvista(root: Path) -> list[EvalItem]:
    """LogicVista (the authors' ``dataset.json`` from their ``data`` folder: ``{id: {imagename, question,
    answer, skill, ...}}`` with images in ``data/images/``; or the Hugging Face parquet with
    ``question``, ``answer``, ``image``, ``skill``). The question holds its options;
    ``answer`` is one letter or several (``"A, C"``: the same set is needed). Category:
    the first ``skill``."""
    items = []
    for i, row in enumerate(read_rows(root, prefer=("dataset.json",))):
        where = str(row.get("_key", row.get("id", i)))
        value = row.get("image") or _get(row, "imagename", where)
        if isinstance(value, str) and "/" not in value:
            value = f"images/{value}"
        image = ImageRef(value, root, where, "image")
        skill = row.get("skill")
        skill = skill[0] if isinstance(skill, list) and skill else skill
        items.append(EvalItem(where, [image], _get(row, "question", where),
                              _text(_get(row, "answer", where)), "choice", str(skill or "choice")))
    return items


@register("mmstar")
def mmstar(root: Path) -> list[EvalItem]:
    """MMStar (``Lin-Chen/MMStar``, split ``val``). Columns read: ``index``, ``question``
    (with its ``Options: A: ...``), ``image``, ``answer`` (a letter), ``category``."""
    items = []
    for row in read_rows(root, split="val"):
        where = str(_get(row, "index", "?"))
        image = ImageRef(_get(row, "image", where), root, where, "image")
        items.append(EvalItem(where, [image], _get(row, "question", where),
                              _text(_get(row, "answer", where)), "choice",
                              str(row.get("category") or "choice")))
    return items


@register("hallusionbench")
def hallusionbench(root: Path) -> list[EvalItem]:
    """HallusionBench (``lmms-lab/HallusionBench``, split ``image``; or the authors'
    ``HallusionBench.json`` with ``filename`` paths). Columns read: ``category``
    (``VD`` / ``VS``), ``subcategory``, ``set_id``, ``figure_id``, ``question_id``,
    ``question``, ``gt_answer`` (``"1"`` = yes, ``"0"`` = no), ``image`` or ``filename``;
    ``visual_input == "0"`` questions are asked without the image."""
    items = []
    for i, row in enumerate(read_rows(root, split="image", prefer=("HallusionBench.json",))):
        where = "_".join(str(row.get(k)) for k in ("category", "subcategory", "set_id",
                                                   "figure_id", "question_id")) or str(i)
        images = []
        if str(row.get("visual_input", "1")) != "0":
            value = _first(row, ("image", "filename"), where)
            images = [ImageRef(value, root, where, "image")]
        gt = _text(_get(row, "gt_answer", where))
        if gt not in ("0", "1"):
            raise ValueError(f"record {where!r}: gt_answer {gt!r} is not '0' or '1'")
        items.append(EvalItem(where, images, _get(row, "question", where),
                              "yes" if gt == "1" else "no", "yesno",
                              str(row.get("category") or "yesno")))
    return items


@register("pope")
def pope(root: Path) -> list[EvalItem]:
    """POPE (``lmms-lab/POPE``, split ``test``). Columns read: ``question_id``,
    ``question``, ``answer`` (``yes`` / ``no``), ``image``, ``category`` (adversarial /
    popular / random)."""
    items = []
    for row in read_rows(root, split="test"):
        where = str(_get(row, "question_id", "?"))
        image = ImageRef(_get(row, "image", where), root, where, "image")
        items.append(EvalItem(where, [image], _get(row, "question", where),
                              _text(_get(row, "answer", where)).lower(), "yesno",
                              str(row.get("category") or "yesno")))
    return items


@register("refcoco")
def refcoco(root: Path) -> list[EvalItem]:
    """RefCOCO referring-expression grounding, one item per expression, in either release:

    * ``lmms-lab/RefCOCO`` (splits ``val`` / ``testA`` / ``testB``): ``question_id``,
      ``image``, ``answer`` (the list of referring expressions), ``bbox`` (COCO
      ``[x, y, w, h]`` pixels);
    * ``jxu124/refcoco``: ``ref_id``, ``sentences`` (``[{"sent": ...}, ...]``), ``bbox``
      (``[x0, y0, x1, y1]`` pixels), ``image_path`` (relative to the folder, e.g.
      ``coco/train2014/...jpg``).

    The question is the expression; the runner adds the model family's coordinate
    instruction. Scorer: IoU >= 0.5 in original pixels.
    """
    items = []
    for i, row in enumerate(read_rows(root, split="val")):
        if "sentences" in row:  # jxu124
            where = str(row.get("ref_id", i))
            exprs = [s["sent"] if isinstance(s, dict) else str(s) for s in row["sentences"]]
            x0, y0, x1, y1 = (float(v) for v in _get(row, "bbox", where))
            image = ImageRef(_get(row, "image_path", where), root, where, "image_path")
        else:  # lmms-lab
            where = str(_get(row, "question_id", str(i)))
            exprs = row.get("answer")
            exprs = [exprs] if isinstance(exprs, str) else list(exprs or [])
            x, y, w, h = (float(v) for v in _get(row, "bbox", where))
            x0, y0, x1, y1 = x, y, x + w, y + h
            image = ImageRef(_get(row, "image", where), root, where, "image")
        if not exprs:
            raise ValueError(f"record {where!r}: no referring expression")
        for k, expr in enumerate(exprs):
            items.append(EvalItem(f"{where}#{k}", [image], str(expr).strip(),
                                  [x0, y0, x1, y1], "box", "grounding"))
    return items


def load_benchmark(name: str, root: str | Path, limit: int | None = None) -> list[EvalItem]:
    """The items of benchmark ``name`` from its local copy ``root`` (first ``limit``)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    items = BENCHMARKS[name](Path(root))
    if not items:
        raise ValueError(f"benchmark {name}: no records in {root}")
    return items[:limit] if limit else items
