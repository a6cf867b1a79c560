"""``visgrpo-data synth``: a deterministic synthetic evidence-VQA dataset.

Two task families (``--task``): ``shapes`` (this module, below) and ``relational``
(:mod:`data_tools.relational`: the target named by shape and relation among look-alikes,
224-px images, with a grounded reasoning chain in a ``reasoning`` column). Shapes are
drawn by :mod:`data_tools.drawing`.

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

from data_tools.drawing import COLOURS, SHAPES, place, shape_box
from data_tools.drawing import draw_shape as _draw
from data_tools.relational import make_sample as relational_sample
from data_tools.segmentation import FEATURE as SEGMENTATION_FEATURE
from visgrpo.data.io import META_FILE, atomic_output_dir, save_dataset
from visgrpo.data.schema import BASE_FEATURES

PLURAL = {"cross": "crosses"}
QUESTION_TYPES = ("colour", "position", "count")
DIRECTIONS = {"left-most": (0, -1), "right-most": (0, 1), "top-most": (1, -1), "bottom-most": (1, 1)}
EXTRA_COLUMNS = ("options", "segmentation", "question_type", "scene")


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


def make_sample(index: int, seed: int, size: int = 224, min_objects: int = 4,
                max_objects: int = 7, question_types=QUESTION_TYPES, choice_fraction: float = 0.5) -> dict:
    """Sample ``index``: a row of the dataset (``image`` as PNG bytes), fully determined by
    ``(seed, index)`` and the settings.
    """
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng([seed, index])
    qtype = str(rng.choice(list(question_types)))
    while True:
        n = int(rng.integers(min_objects, max_objects + 1))
        objs, evidence, q = _attributes(qtype, n, rng)
        spots = place(n, size, rng)
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
        box, a = shape_box(shape, cx, cy, r, size)
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


#: task family -> sample function ``(index, seed, **settings) -> row``.
TASKS = {"shapes": make_sample, "relational": relational_sample}


def features(task: str = "shapes"):
    """Columns of a ``task`` dataset (``relational`` adds ``reasoning``)."""
    import datasets

    extra = {"reasoning": datasets.Value("string")} if task == "relational" else {}
    return datasets.Features({
        **BASE_FEATURES,
        "options": datasets.Sequence(datasets.Value("string")),
        "segmentation": SEGMENTATION_FEATURE,
        "question_type": datasets.Value("string"),
        "scene": datasets.Value("string"),
        **extra,
    })


def generate(num: int, seed: int, progress: bool = False, start: int = 0, task: str = "shapes", **settings):
    """A ``datasets.Dataset`` of samples ``start .. start+num-1`` of ``task`` (:data:`TASKS`)."""
    import datasets
    from tqdm.auto import tqdm

    sample = TASKS[task]
    rows = [sample(i, seed, **settings)
            for i in tqdm(range(start, start + num), desc="synth", disable=not progress, file=sys.stderr)]
    cols = {k: [r[k] for r in rows] for k in features(task)}
    return datasets.Dataset.from_dict(cols, features=features(task))


def add_arguments(parser) -> None:
    parser.add_argument("--task", choices=tuple(TASKS), default="shapes",
                        help="shapes: colour/position/count questions (this module); relational: the target named by "
                             "shape and relation, with a grounded reasoning column (data_tools/relational.py)")
    parser.add_argument("--out", required=True, help="output directory (train/ and validation/)")
    parser.add_argument("--num", type=int, required=True, help="total number of samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224, help="image side in px (224 = 8x28 = 7x32)")
    parser.add_argument("--min-objects", type=int, default=None,
                        help="fewest objects per image (default: 4 for shapes, 5 for relational)")
    parser.add_argument("--max-objects", type=int, default=7)
    parser.add_argument("--question-types", default=",".join(QUESTION_TYPES),
                        help=f"comma-separated subset of {','.join(QUESTION_TYPES)}")
    parser.add_argument("--choice-fraction", type=float, default=0.5,
                        help="share of colour questions asked as A-D choice (else text)")
    parser.add_argument("--chain", choices=("full", "candidates"), default="full",
                        help="relational only: the reasoning chain lists every object (full, >= 48 words) or only the "
                             "look-alike candidates and the reference (candidates, about 30 words)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def settings_from_args(args) -> dict:
    qtypes = tuple(t.strip() for t in args.question_types.split(",") if t.strip())
    bad = [t for t in qtypes if t not in QUESTION_TYPES]
    if bad or not qtypes:
        raise ValueError(f"--question-types: unknown {bad}; valid: {', '.join(QUESTION_TYPES)}")
    task = getattr(args, "task", "shapes")
    if args.min_objects is None:  # the task's own minimum (relational needs a target, twin, distractor, reference)
        args.min_objects = 5 if task == "relational" else 4
    if not 3 <= args.min_objects <= args.max_objects:
        raise ValueError("need 3 <= --min-objects <= --max-objects (questions need distractors)")
    if args.max_objects > 12 or args.size < 64:
        raise ValueError("--max-objects <= 12 and --size >= 64 (the shapes must fit without overlap)")
    if task == "relational" and not 5 <= args.min_objects <= args.max_objects <= 8:
        raise ValueError("--task relational needs 5 <= --min-objects <= --max-objects <= 8 (target, twin, "
                         "colour distractor, reference, one more; larger shapes)")
    chain = getattr(args, "chain", "full")
    if task != "relational" and chain != "full":
        raise ValueError("--chain applies to --task relational only")
    extra = {"chain": chain} if task == "relational" else {}
    return {"task": task, "size": args.size, "min_objects": args.min_objects, "max_objects": args.max_objects,
            "question_types": qtypes, "choice_fraction": args.choice_fraction, **extra}


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
