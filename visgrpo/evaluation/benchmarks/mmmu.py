"""The MMMU benchmark loader (MMMU/MMMU (dataset card); MMMU-Benchmark/MMMU mmmu/utils/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import LETTERS
from visgrpo.evaluation.sources import ImageRef, read_rows

_IMAGE_TAG = re.compile(r"<image\s+(\d+)>")
_ID = re.compile(r"^(?:dev|validation|test)_(.+?)_\d+$")


def literal_list(value: Any, where: str, field: str) -> list:
    """A list cell, or a list written as Python text (MMMU's ``options``: ``"['a', 'b']"``;
    parsed with ``ast.literal_eval``, which evaluates literals only).
    """
    if isinstance(value, list):
        return value
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        raise ValueError(f"record {where!r}: {field} {str(value)[:60]!r} is not a list") from None
    if not isinstance(parsed, list):
        raise ValueError(f"record {where!r}: {field} {str(value)[:60]!r} is not a list")
    return parsed


def tagged_images(row: dict, texts: list[str], root: Path, where: str) -> list[ImageRef]:
    """The ``image_<n>`` cells in the order their ``<image n>`` tags appear (as MMMU-Pro's
    ``replace_images_tokens`` + ``origin_mmmu_doc_to_visual``, infer_transformers.py L17-45).
    """
    order = [int(n) for t in texts for n in _IMAGE_TAG.findall(t)]
    refs = []
    for n in order:
        value = row.get(f"image_{n}")
        if value is None:
            raise ValueError(f"record {where!r}: <image {n}> is used but column image_{n} is empty")
        refs.append(ImageRef(value, root, where, f"image_{n}"))
    return refs


def untag(prompt: str) -> str:
    """``<image n>`` tags become ``[image]`` (infer_transformers.py L17-20); the images
    themselves go before the text, as every visgrpo prompt places them.
    """
    return _IMAGE_TAG.sub("[image]", prompt)


def options_block(options: list[str]) -> str:
    """``A. ...`` lines (MMMU-Pro infer_transformers.py L23-26, MMMU's prompt)."""
    return "\n".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(options))


@register("mmmu", scorer="mmmu",
          source="MMMU/MMMU (dataset card); MMMU-Benchmark/MMMU mmmu/utils/eval_utils.py")
def mmmu(root: Path) -> list[EvalItem]:
    """MMMU ``validation`` (``MMMU/MMMU``: one config per subject, ``<Subject>/
    validation-00000-of-00001.parquet``; or ``lmms-lab/MMMU``, all subjects in one
    ``data/validation-*.parquet``; ``dev`` is skipped and ``test`` answers are withheld).
    Columns read:
    ``id`` (``validation_<Subject>_<n>``: the subject is the category), ``question``,
    ``options`` (a Python-literal list as text), ``image_1`` ... ``image_7`` (placed in the
    order their ``<image n>`` tags appear), ``answer`` (a letter; open questions: the value,
    sometimes a list as text), ``question_type`` (``multiple-choice`` / ``open``). Scorer:
    MMMU's ``parse_multi_choice_response`` / ``parse_open_response``.
    """
    items = []
    for row in read_rows(root, split="validation"):
        where = str(get(row, "id", "?"))
        options = [str(o) for o in literal_list(get(row, "options", where), where, "options")]
        question = get(row, "question", where)
        qtype = "open" if get(row, "question_type", where) == "open" else "multiple-choice"
        answer: Any = text(get(row, "answer", where))
        if qtype == "open" and answer.startswith("["):
            answer = [str(a) for a in literal_list(answer, where, "answer")]
        elif qtype != "open" and answer not in LETTERS[: len(options)]:
            raise ValueError(f"record {where!r}: answer {answer!r} is not one of its "
                             f"{len(options)} option letters")
        images = tagged_images(row, [question, *options], root, where)
        prompt = f"{question}\n{options_block(options)}" if qtype != "open" else question
        m = _ID.match(where)
        items.append(EvalItem(where, images, untag(prompt), answer, "mmmu",
                              m.group(1) if m else "mmmu",
                              {"options": options, "question_type": qtype}))
    return items
