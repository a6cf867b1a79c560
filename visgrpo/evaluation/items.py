"""One benchmark question, as every loader returns it and every scorer reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvalItem:
    """A benchmark question.

    Attributes:
        id: the benchmark's own id (``pid``, ``index``, ``question_id`` ...).
        images: the images in prompt order (empty for a text-only question): PIL images
            or ``ImageRef`` s decoded when their batch runs.
        question: the question text the model sees (before the prompt template).
        answer: the gold answer: option letter(s), number, text, ``yes``/``no``, or
            ``[x0, y0, x1, y1]`` in original-image pixels for grounding.
        scorer: ``choice`` | ``number`` | ``math`` | ``yesno`` | ``text`` | ``box``
            (visgrpo/evaluation/scoring.py).
        category: the breakdown the benchmark reports (answer type, subset, skill);
            one metric per category.
        meta: scorer inputs: ``options`` (choice texts), ``precision`` (decimals),
            and for boxes ``family``/``width``/``height``/``resized_hw`` (set at run time).
    """

    id: str
    images: list[Any]
    question: str
    answer: Any
    scorer: str
    category: str
    meta: dict[str, Any] = field(default_factory=dict)
