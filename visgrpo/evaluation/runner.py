"""Batched generation over benchmark items and per-item scores, for the two protocols
papers report: greedy decoding, and avg@k (k samples at temperature 1.0, the mean score).

Prompts are built like the training prompts (``visgrpo.rollout.prompts``: the images, then
the question in the prompt template), and responses come from a rollout engine (the HF
``generate`` engine, or vLLM), so an evaluated model sees exactly what it was trained on.
Grounding items get the family's coordinate instruction (``visgrpo.rewards.coords``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from visgrpo.data.batch import PromptBatch
from visgrpo.data.geometry import Geometry
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.scoring import score
from visgrpo.evaluation.sources import ImageRef
from visgrpo.rewards.coords import grounding_instruction
from visgrpo.rollout.base import SamplingConfig
from visgrpo.rollout.prompts import build_messages, prompt_text

_AVG = re.compile(r"^avg@(\d+)$")


@dataclass(frozen=True)
class Protocol:
    """``greedy`` (one greedy response) or ``avg@k`` (k samples at temperature 1.0)."""

    name: str
    k: int = 1

    @classmethod
    def parse(cls, text: str, k: int = 8) -> Protocol:
        """``"greedy"``, ``"avg@k"`` (with ``k``) or ``"avg@16"``."""
        if text == "greedy":
            return cls("greedy", 1)
        m = _AVG.match(text)
        if text == "avg@k" or m:
            n = int(m.group(1)) if m else k
            if n < 1:
                raise ValueError(f"protocol {text!r}: k must be >= 1")
            return cls(f"avg@{n}", n)
        raise ValueError(f"unknown protocol {text!r}; valid: greedy, avg@k, avg@<k>")

    def sampling(self, max_new_tokens: int) -> SamplingConfig:
        if self.name == "greedy":
            return SamplingConfig(max_new_tokens=max_new_tokens, num_generations=1, do_sample=False)
        return SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
                              num_generations=self.k, do_sample=True)


@dataclass
class ItemResult:
    """An item's completions, their scores and their mean (the item's score); with a judge,
    the answers it extracted from the completions.
    """

    item: EvalItem
    completions: list[str]
    scores: list[float]
    extractions: list[str] | None = None

    @property
    def score(self) -> float:
        return sum(self.scores) / len(self.scores)


def prompt_batch(items: list[EvalItem], processor, geometry: Geometry, template: str,
                 system_prompt: str | None) -> PromptBatch:
    """The items' prompts; grounding items get their family, sizes and coordinate line."""
    samples, images, prompts, messages = [], [], [], []
    for item in items:
        imgs = [im.load() if isinstance(im, ImageRef) else im.convert("RGB") for im in item.images]
        resized = [geometry.resized_hw(im.height, im.width) for im in imgs]
        question = item.question
        if item.scorer == "box":
            if len(imgs) != 1:
                raise ValueError(f"record {item.id!r}: a grounding item needs exactly one image")
            item.meta.update(family=geometry.family, width=imgs[0].width,
                             height=imgs[0].height, resized_hw=resized)
            question = (f"Locate {question} in the image. "
                        f"{grounding_instruction(geometry.family, resized[0])}")
        msgs = build_messages({"id": item.id, "question": question}, len(imgs), template,
                              system_prompt)
        samples.append({"id": item.id, "family": geometry.family, "resized_hw": resized,
                        "grid_thw": [geometry.grid_thw(im.height, im.width) for im in imgs]})
        images.append(imgs)
        messages.append(msgs)
        prompts.append(prompt_text(processor, msgs))
    return PromptBatch(samples, images, prompts, messages)


def generate_batches(
    items: list[EvalItem],
    batches: Iterable[int],
    model,
    processor,
    engine,
    geometry: Geometry,
    protocol: Protocol,
    on_batch: Callable[[int, list[EvalItem], list[list[str]]], None],
    *,
    template: str,
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 1024,
    seed: int = 0,
    desc: str = "eval",
    progress: bool = True,
) -> None:
    """Generate the given global batches (``items[b * batch_size : (b + 1) * batch_size]``)
    and hand each to ``on_batch(b, items, completions)`` as soon as it is done.

    Args:
        engine: a rollout engine (``generate(model, processor, prompts, sampling, seed)``
            whose result has ``completions``: G per prompt, prompt-major).
        seed: batch ``b`` samples with seed ``seed + b``: a batch samples the same whatever
            runs it (a resumed run, another rank), so avg@k is reproducible.
    """
    from tqdm.auto import tqdm

    sampling = protocol.sampling(max_new_tokens)
    G = sampling.num_generations
    batches = list(batches)
    total = sum(len(items[b * batch_size : (b + 1) * batch_size]) for b in batches)
    with tqdm(total=total, desc=desc, unit="q", disable=not progress) as bar:
        for b in batches:
            chunk = items[b * batch_size : (b + 1) * batch_size]
            batch = prompt_batch(chunk, processor, geometry, template, system_prompt)
            out = engine.generate(model, processor, batch, sampling, seed=seed + b)
            if len(out.completions) != G * len(chunk):
                raise RuntimeError(f"engine returned {len(out.completions)} completions for "
                                   f"{len(chunk)} prompts x {G}")
            on_batch(b, chunk, [list(out.completions[i * G : (i + 1) * G]) for i in range(len(chunk))])
            bar.update(len(chunk))


def score_items(items: list[EvalItem], completions: list[list[str]]) -> list[ItemResult]:
    """Score every completion with its item's scorer (rule-based answer extraction)."""
    return [ItemResult(item, texts, [score(t, item) for t in texts])
            for item, texts in zip(items, completions, strict=True)]


def summarize(benchmark: str, results: list[ItemResult]) -> list[dict]:
    """Rows ``{benchmark, category, n, accuracy}``: ``all`` first, then each category."""
    groups: dict[str, list[float]] = {"all": []}
    for r in results:
        groups["all"].append(r.score)
        groups.setdefault(r.item.category, []).append(r.score)
    if len(groups) == 2:  # one category: the overall row says it all
        groups = {"all": groups["all"]}
    return [{"benchmark": benchmark, "category": c, "n": len(v), "accuracy": sum(v) / len(v)}
            for c, v in groups.items()]
