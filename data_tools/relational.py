"""``visgrpo-data synth --task relational``: questions that need one region, with a grounded
reasoning chain.

Each image (default 224 px: an 8x8 merged token grid for Qwen2.5-VL's 28-px tokens) shows
5-7 shapes (:mod:`data_tools.drawing`, radii 9-13% of the side). The TARGET shares its
shape with exactly one other object (the twin, another colour) and its colour with
another (a distractor of another shape), so neither the shape nor the colour statistics of
the image give the answer. The question names the target by its shape and a relation:

* ``position``: "What colour is the triangle on the left?" (left / right / at the top /
  at the bottom of the two triangles, by at least 15% of the image side);
* ``nearest``: "What colour is the triangle nearest to the green star?" (a reference object
  whose shape and colour are unique; the target is at most 0.7 times as far from it as the
  twin, centre to centre).

The answer is the target's colour (``text``, 6 colours: chance 1/6); the evidence is the
target alone (``boxes``, ``box_labels``, ``segmentation``). The ``reasoning`` column is a
grounded chain of thought (>= 48 words) that lists every object with its coarse place (3x3
grid: "top left" ... "bottom right"; ``--chain candidates``: only the look-alikes and the
reference, about 30 words), names both candidates, applies the relation and only
then states the colour, e.g. for SFT with ``<think>{reasoning}</think><answer>{answer}</answer>``:
so a policy answering late in a long response must look back at the image. Other columns
as ``synth`` (``question_type`` = ``position`` or ``nearest``; ``scene`` lists every
object). Sample ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageDraw

from data_tools.drawing import COLOURS, SHAPES, draw_shape, place, shape_box

RELATIONS = ("position", "nearest")
RADIUS = (0.09, 0.13)
POSITION_MARGIN = 0.15  # x the image side
NEAREST_RATIO = 0.7
ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")
PLURAL = {"cross": "crosses"}


def region_name(cx: float, cy: float, size: int) -> str:
    """Coarse place of a centre on the 3x3 grid: "top left", ..., "centre", ..."bottom right"."""
    row, col = ROWS[min(int(3 * cy / size), 2)], COLS[min(int(3 * cx / size), 2)]
    if row == "middle" and col == "centre":
        return "centre"
    return f"{row} {col}" if row != "middle" else f"middle {col}"


def _roles(spots, size: int, rng: np.random.Generator):
    """``(kind, target, twin, reference or None, direction or None)`` indices for these
    positions, or None when the relation would not be clear-cut.
    """
    n = len(spots)
    kind = str(rng.choice(RELATIONS))
    a, b = (int(x) for x in rng.permutation(n)[:2])
    xy = np.array([(s[0], s[1]) for s in spots])
    if kind == "position":
        d = xy[a] - xy[b]
        axis = int(np.argmax(np.abs(d)))
        if abs(d[axis]) < POSITION_MARGIN * size:
            return None
        target, twin = (a, b) if rng.random() < 0.5 else (b, a)
        before = xy[target, axis] < xy[twin, axis]
        direction = (("on the left" if before else "on the right") if axis == 0
                     else ("at the top" if before else "at the bottom"))
        return kind, target, twin, None, direction
    ref = int(rng.choice([k for k in range(n) if k not in (a, b)]))
    da, db = (float(np.linalg.norm(xy[k] - xy[ref])) for k in (a, b))
    if min(da, db) > NEAREST_RATIO * max(da, db):
        return None
    target, twin = (a, b) if da < db else (b, a)
    return kind, target, twin, ref, None


def _attributes(n: int, target: int, twin: int, ref: int | None, rng: np.random.Generator):
    """(shape, colour) of every object: the target and its twin share a shape (no other
    object has it); another object shares the target's colour; the reference is unique.
    """
    shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
    others = [s for s in SHAPES if s != shape]
    objs: list[tuple[str, str] | None] = [None] * n
    objs[target] = (shape, colour)
    objs[twin] = (shape, str(rng.choice([c for c in COLOURS if c != colour])))
    rest = [k for k in range(n) if k not in (target, twin, ref)]
    if ref is not None:
        objs[ref] = (str(rng.choice(others)), str(rng.choice(list(COLOURS))))
    objs[rest[0]] = (str(rng.choice([s for s in others if ref is None or (s, colour) != objs[ref]])), colour)
    for k in rest[1:]:
        while True:
            o = (str(rng.choice(others)), str(rng.choice(list(COLOURS))))
            if ref is None or o != objs[ref]:
                objs[k] = o
                break
    return objs


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


CHAINS = ("full", "candidates")


def _reasoning(scene, kind, target, twin, ref, direction, size, chain: str = "full") -> str:
    place_of = [region_name((o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2, size) for o in scene]
    centre = [((o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2) for o in scene]
    # reading order
    order = sorted(range(len(scene)), key=lambda k: (min(int(3 * centre[k][1] / size), 2), centre[k][0]))
    listed = ", ".join(f"{_article(scene[k]['colour'])} {scene[k]['colour']} {scene[k]['shape']} at the {place_of[k]}"
                       for k in order)
    t, w = scene[target], scene[twin]
    noun = PLURAL.get(t["shape"], t["shape"] + "s")
    text = f"I see {len(scene)} objects: {listed}. " if chain == "full" else ""
    text += (f"There are two {noun}: the {t['colour']} one at the {place_of[target]} and the {w['colour']} one at "
             f"the {place_of[twin]}. ")
    if kind == "position":
        text += f"The {t['shape']} {direction} is the {t['colour']} one at the {place_of[target]}."
    else:
        r = scene[ref]
        text += (f"The {r['colour']} {r['shape']} is at the {place_of[ref]}, and the {t['shape']} nearest to it "
                 f"is the {t['colour']} one at the {place_of[target]}.")
    return text + f" So the colour of that {t['shape']} is {t['colour']}."


def make_sample(index: int, seed: int, size: int = 224, min_objects: int = 5, max_objects: int = 7,
                chain: str = "full", **_) -> dict:
    """Sample ``index`` (a dataset row, ``image`` as PNG bytes), fully determined by
    ``(seed, index)`` and the settings (question types and choice fraction do not apply).

    ``chain``: ``full`` lists every object before the candidates (>= 48 words); ``candidates``
    starts at the two look-alikes (and the reference), about 30 words, >= 48 tiny-tokenizer
    tokens: a third of the generation cost per RL step, still several clusters for AT-RL.
    """
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {', '.join(CHAINS)}, got {chain!r}")
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng([seed, index])
    while True:
        n = int(rng.integers(min_objects, max_objects + 1))
        spots = place(n, size, rng, radius=RADIUS)
        roles = None if spots is None else _roles(spots, size, rng)
        if roles is not None:
            break
    kind, target, twin, ref, direction = roles
    objs = _attributes(n, target, twin, ref, rng)
    img = Image.new("RGB", (size, size), (236, 236, 230))
    draw = ImageDraw.Draw(img)
    scene, seg = [], None
    for k, ((shape, colour), (cx, cy, r)) in enumerate(zip(objs, spots, strict=True)):
        draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
        box, mask = shape_box(shape, cx, cy, r, size)
        scene.append({"shape": shape, "colour": colour, "box": box})
        if k == target:
            rle = mask_utils.encode(np.asfortranarray(mask))
            seg = json.dumps({"size": [size, size], "counts": rle["counts"].decode()})
    t = scene[target]
    if kind == "position":
        question = f"What colour is the {t['shape']} {direction}?"
    else:
        question = f"What colour is the {t['shape']} nearest to the {scene[ref]['colour']} {scene[ref]['shape']}?"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {
        "id": f"relational-{seed}-{index:07d}", "image": {"bytes": buf.getvalue(), "path": None},
        "question": question, "answer": t["colour"], "answer_type": "text",
        "boxes": [t["box"]], "box_labels": [f"{t['colour']} {t['shape']}"],
        "source": "synth-relational", "width": size, "height": size, "options": [],
        "segmentation": [seg], "question_type": kind, "scene": json.dumps(scene),
        "reasoning": _reasoning(scene, kind, target, twin, ref, direction, size, chain),
    }


__all__ = ["CHAINS", "RELATIONS", "make_sample", "region_name"]
