"""Validation before any generation: every benchmark is loaded and each item checked, so a
bad record is found in seconds, not after hours of generation, and all problems are listed
at once.

Per item: its scorer accepts the gold answer (the scorer is run on an empty completion:
it raises on a gold answer it cannot read, as LogicVista's ``"3"`` under a letter scorer
did), a grounding box has four finite numbers, and every image cell can be opened (header
only; decoding happens when its batch runs).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from visgrpo.evaluation.benchmarks import load_benchmark
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import score
from visgrpo.evaluation.sources import ImageRef, resolve_path


@dataclass
class Loaded:
    """The benchmarks that loaded and validated, and the problems of the others."""

    suites: dict[str, list[EvalItem]] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)


def check_image(image, where: str) -> str | None:
    """``None``, or why the image cell of record ``where`` cannot be opened."""
    if not isinstance(image, ImageRef):
        return None if hasattr(image, "size") else f"record {where!r}: image is a {type(image).__name__}"
    from PIL import Image

    value = image.value
    try:
        if hasattr(value, "size"):
            return None
        if isinstance(value, dict) and value.get("bytes"):
            try:
                Image.open(io.BytesIO(value["bytes"])).close()
            except OSError:
                return f"record {where!r}: field {image.field!r}: its bytes are not an image"
            return None
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str) or not path:
            return f"record {where!r}: field {image.field!r}: no image in {type(value).__name__} value"
        Image.open(resolve_path(image.root, path)).close()
    except (OSError, ValueError) as err:
        return f"record {where!r}: field {image.field!r}: {str(err).splitlines()[0]}"
    return None


def check_item(item: EvalItem) -> list[str]:
    """The problems of one item (empty when it can be generated and scored)."""
    problems = [p for im in item.images if (p := check_image(im, item.id))]
    # box needs run-time inputs (model family, image size) and math a sympy worker pool:
    # checked by shape; the others by running the scorer.
    if item.scorer == "box":
        box = item.answer
        ok = isinstance(box, (list, tuple)) and len(box) == 4
        if not ok or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
            problems.append(f"record {item.id!r}: gold box {box!r} is not four numbers")
    elif item.scorer == "math":
        if not str(item.answer).strip():
            problems.append(f"record {item.id!r}: empty gold answer")
    else:
        try:
            score("", item)
        except ValueError as err:
            problems.append(str(err).splitlines()[0])
    return problems


def load_all(paths: dict[str, Path], limit: int | None = None) -> Loaded:
    """Load and check every benchmark; one that fails lands in ``problems``, with all its
    problem lines, and the others load regardless.
    """
    out = Loaded()
    for name, path in paths.items():
        try:
            items = load_benchmark(name, path, limit)
        except (ValueError, OSError, KeyError) as err:
            out.problems[name] = [str(err).splitlines()[0] if str(err) else type(err).__name__]
            continue
        problems = [p for item in items for p in check_item(item)]
        if problems:
            out.problems[name] = problems
        else:
            out.suites[name] = items
    return out


def problems_text(problems: dict[str, list[str]], max_lines: int | None = None) -> str:
    """``benchmark: problem`` lines (``max_lines`` per benchmark, then a count)."""
    lines = []
    for name, found in problems.items():
        shown = found if max_lines is None else found[:max_lines]
        lines += [f"{name}: {p}" for p in shown]
        if len(found) > len(shown):
            lines.append(f"{name}: ... and {len(found) - len(shown)} more")
    return "\n".join(lines) + ("\n" if lines else "")
