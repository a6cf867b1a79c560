"""``visgrpo-data synth``: a deterministic synthetic evidence-VQA dataset.

Each image shows several coloured shapes (circle, square, triangle, star, cross, diamond;
red, green, blue, yellow, purple, orange) on a plain background, drawn with PIL, never
overlapping. One question per image, of three kinds:

* ``colour`` -- "What colour is the star?": the named shape occurs once; another object has
  the same colour and at least two other colours are present, so colour statistics of the
  whole image do not give the answer. Asked as ``choice`` (options A-D listed in the
  question, all colours; answer = letter; ``options`` column) or ``text`` (colour name).
* ``position`` -- "What shape is the left-most object?" (left/right/top/bottom-most, by a
  clear margin): ``text`` answer, at least three distinct shapes in the image.
* ``count`` -- "How many red circles are there?" (1-3): ``number``; distractors include a
  red non-circle and a non-red circle, so neither colour nor shape alone counts them.

Evidence = the objects the answer depends on: ``boxes`` (tight pixel boxes of the drawn
shapes, xyxy), ``box_labels`` ("red circle"), ``segmentation`` (one COCO RLE per box as
JSON text ``{"size": [H, W], "counts": str}``: the format of :mod:`data_tools.segmentation`). Extra columns:
``options`` (choice letters' texts, else empty), ``question_type``, ``scene`` (JSON list of
every object: shape, colour, box -- the generator's ground truth).

Output: ``DIR/train`` and ``DIR/validation``, two datasets written by
:func:`visgrpo.data.io.save_dataset` (the EvidenceDataModule reads them as ``train_path`` /
``val_path``), plus ``DIR/visgrpo_meta.json`` with the generator settings; the whole
directory appears atomically. Sample ``i`` depends only on ``(seed, i)``; the last
``round(num * val_fraction)`` samples form the validation split.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from data_tools.segmentation import FEATURE as SEGMENTATION_FEATURE
from visgrpo.data.io import META_FILE, atomic_output_dir, save_dataset
from visgrpo.data.schema import BASE_FEATURES

COLOURS = {
    "red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220),
    "yellow": (230, 200, 20), "purple": (140, 60, 180), "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
PLURAL = {"cross": "crosses"}
QUESTION_TYPES = ("colour", "position", "count")
DIRECTIONS = {"left-most": (0, -1), "right-most": (0, 1), "top-most": (1, -1), "bottom-most": (1, 1)}
EXTRA_COLUMNS = ("options", "segmentation", "question_type", "scene")


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon of ``shape`` centred at (cx, cy) with outer radius r (None: circle)."""
    if shape == "circle":
        return None
    if shape == "square":
        a = r * 0.8
        return [(cx - a, cy - a), (cx + a, cy - a), (cx + a, cy + a), (cx - a, cy + a)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)]
    if shape == "triangle":
        return [(cx + r * np.cos(t), cy + r * np.sin(t)) for t in np.radians([-90, 30, 150])]
    if shape == "star":
        ang = np.radians(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        return list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True))
    if shape == "cross":
        a, b = r * 0.32, r
        pts = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b)]
        pts += [(-x, y) for x, y in reversed(pts)]
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def _draw(draw: ImageDraw.ImageDraw, shape, cx, cy, r, fill) -> None:
    poly = _outline(shape, cx, cy, r)
    if poly is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def _attributes(qtype: str, n: int, rng: np.random.Generator):
    """(list of (shape, colour), indices of the evidence objects, question payload)."""
    shapes, colours = list(SHAPES), list(COLOURS)
    if qtype == "colour":
        s, c = rng.choice(shapes), rng.choice(colours)
        others = [x for x in shapes if x != s]
        objs = [(s, c), (rng.choice(others), c)]  # a distractor shares the answer colour
        rest = rng.permutation([x for x in colours if x != c])
        objs += [(rng.choice(others), rest[j % len(rest)]) for j in range(n - 2)]
        return objs, [0], {"shape": s, "colour": c}
    if qtype == "count":
        s, c = rng.choice(shapes), rng.choice(colours)
        k = int(rng.integers(1, min(3, n - 2) + 1))
        objs = [(s, c)] * k
        objs += [(rng.choice([x for x in shapes if x != s]), c)]  # same colour, other shape
        objs += [(s, rng.choice([x for x in colours if x != c]))]  # same shape, other colour
        while len(objs) < n:
            o = (rng.choice(shapes), rng.choice(colours))
            if o != (s, c):
                objs.append(o)
        return objs, list(range(k)), {"shape": s, "colour": c, "count": k}
    if qtype == "position":
        kinds = rng.permutation(shapes)
        objs = [(kinds[j % 3] if j < 3 else rng.choice(shapes), rng.choice(colours)) for j in range(n)]
        return objs, None, {"direction": str(rng.choice(list(DIRECTIONS)))}
    raise ValueError(f"unknown question type {qtype!r}; valid: {', '.join(QUESTION_TYPES)}")


def _place(n: int, size: int, rng: np.random.Generator, tries: int = 200):
    """Centres and radii of ``n`` non-overlapping objects inside the canvas (or None)."""
    out: list[tuple[float, float, float]] = []
    for _ in range(tries * n):
        r = float(rng.uniform(0.07, 0.12) * size)
        cx, cy = (float(v) for v in rng.uniform(r + 2, size - r - 2, size=2))
        if all((cx - x) ** 2 + (cy - y) ** 2 > (r + q + 4) ** 2 for x, y, q in out):
            out.append((cx, cy, r))
            if len(out) == n:
                return out
    return None


def make_sample(index: int, seed: int, size: int = 224, min_objects: int = 4,
                max_objects: int = 7, question_types=QUESTION_TYPES, choice_fraction: float = 0.5) -> dict:
    """Sample ``index``: a row of the dataset (``image`` as PNG bytes), fully determined by
    ``(seed, index)`` and the settings."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng([seed, index])
    qtype = str(rng.choice(list(question_types)))
    while True:
        n = int(rng.integers(min_objects, max_objects + 1))
        objs, evidence, q = _attributes(qtype, n, rng)
        spots = _place(n, size, rng)
        if spots is None:
            continue
        order = rng.permutation(n)  # evidence objects are not always drawn first
        objs = [objs[j] for j in order]
        evidence = None if evidence is None else sorted(int(np.flatnonzero(order == e)[0]) for e in evidence)
        if qtype == "position":
            axis, sign = DIRECTIONS[q["direction"]]
            pos = np.array([s[axis] * sign for s in spots])
            best, second = np.argsort(-pos)[:2]
            if pos[best] - pos[second] < 0.08 * size:  # not clearly extreme: redraw
                continue
            evidence = [int(best)]
        break
    img = Image.new("RGB", (size, size), (236, 236, 230))
    draw = ImageDraw.Draw(img)
    scene, segs = [], []
    for j, ((shape, colour), (cx, cy, r)) in enumerate(zip(objs, spots, strict=True)):
        _draw(draw, shape, cx, cy, r, COLOURS[colour])
        m = Image.new("L", (size, size), 0)
        _draw(ImageDraw.Draw(m), shape, cx, cy, r, 1)
        a = np.asarray(m, np.uint8)
        ys, xs = np.nonzero(a)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        scene.append({"shape": shape, "colour": colour, "box": box})
        if j in evidence:
            rle = mask_utils.encode(np.asfortranarray(a))
            segs.append(json.dumps({"size": [size, size], "counts": rle["counts"].decode()}))
    ev = [scene[j] for j in evidence]
    question, answer, atype, options = _question(qtype, q, ev, rng, choice_fraction, scene)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {
        "id": f"synth-{seed}-{index:07d}", "image": {"bytes": buf.getvalue(), "path": None},
        "question": question, "answer": answer, "answer_type": atype,
        "boxes": [o["box"] for o in ev], "box_labels": [f"{o['colour']} {o['shape']}" for o in ev],
        "source": "synth", "width": size, "height": size, "options": options,
        "segmentation": segs, "question_type": qtype, "scene": json.dumps(scene),
    }


def _question(qtype, q, ev, rng, choice_fraction, scene):
    if qtype == "colour":
        present = [c for c in dict.fromkeys(o["colour"] for o in scene) if c != q["colour"]]
        absent = [c for c in COLOURS if c != q["colour"] and c not in present]
        distract = list(rng.permutation(present))[:3]
        distract += list(rng.permutation(absent))[: 3 - len(distract)]
        if rng.random() < choice_fraction:
            opts = [str(c) for c in rng.permutation([q["colour"], *distract])]
            letters = "ABCD"
            listed = " ".join(f"{letters[j]}. {o}" for j, o in enumerate(opts))
            return (f"What colour is the {q['shape']}? Options: {listed}",
                    letters[opts.index(q["colour"])], "choice", opts)
        return f"What colour is the {q['shape']}?", q["colour"], "text", []
    if qtype == "count":
        noun = PLURAL.get(q["shape"], q["shape"] + "s")
        return f"How many {q['colour']} {noun} are there?", str(q["count"]), "number", []
    return f"What shape is the {q['direction']} object?", ev[0]["shape"], "text", []


def features():
    import datasets

    return datasets.Features({
        **BASE_FEATURES,
        "options": datasets.Sequence(datasets.Value("string")),
        "segmentation": SEGMENTATION_FEATURE,
        "question_type": datasets.Value("string"),
        "scene": datasets.Value("string"),
    })


def generate(num: int, seed: int, progress: bool = False, start: int = 0, **settings):
    """A ``datasets.Dataset`` of samples ``start .. start+num-1``."""
    import datasets
    from tqdm.auto import tqdm

    rows = [make_sample(i, seed, **settings)
            for i in tqdm(range(start, start + num), desc="synth", disable=not progress, file=sys.stderr)]
    cols = {k: [r[k] for r in rows] for k in features()}
    return datasets.Dataset.from_dict(cols, features=features())


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory (train/ and validation/)")
    parser.add_argument("--num", type=int, required=True, help="total number of samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224, help="image side in px (224 = 8x28 = 7x32)")
    parser.add_argument("--min-objects", type=int, default=4)
    parser.add_argument("--max-objects", type=int, default=7)
    parser.add_argument("--question-types", default=",".join(QUESTION_TYPES),
                        help=f"comma-separated subset of {','.join(QUESTION_TYPES)}")
    parser.add_argument("--choice-fraction", type=float, default=0.5,
                        help="share of colour questions asked as A-D choice (else text)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def settings_from_args(args) -> dict:
    qtypes = tuple(t.strip() for t in args.question_types.split(",") if t.strip())
    bad = [t for t in qtypes if t not in QUESTION_TYPES]
    if bad or not qtypes:
        raise ValueError(f"--question-types: unknown {bad}; valid: {', '.join(QUESTION_TYPES)}")
    if not 3 <= args.min_objects <= args.max_objects:
        raise ValueError("need 3 <= --min-objects <= --max-objects (questions need distractors)")
    if args.max_objects > 12 or args.size < 64:
        raise ValueError("--max-objects <= 12 and --size >= 64 (the shapes must fit without overlap)")
    return {"size": args.size, "min_objects": args.min_objects, "max_objects": args.max_objects,
            "question_types": qtypes, "choice_fraction": args.choice_fraction}


def run(args) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"synth: {e}", file=sys.stderr)
        return 2
    if args.num < 1 or not 0 <= args.val_fraction < 1:
        print("synth: need --num >= 1 and 0 <= --val-fraction < 1", file=sys.stderr)
        return 2
    n_val = int(round(args.num * args.val_fraction))
    splits = {"train": (0, args.num - n_val), "validation": (args.num - n_val, n_val)}
    meta = {"synth": {**settings, "question_types": list(settings["question_types"]),
                      "seed": args.seed, "num": args.num, "splits": {k: v[1] for k, v in splits.items()}}}
    with atomic_output_dir(Path(args.out), overwrite=args.overwrite) as tmp:
        for name, (start, count) in splits.items():
            ds = generate(count, args.seed, progress=not args.no_progress, start=start, **settings)
            save_dataset(ds, tmp / name, meta=meta, fmt=args.format)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    print(f"synth: {args.num - n_val} train + {n_val} validation samples -> {args.out}")
    return 0
