"""``convert coco`` throughput on a generated COCO-style file of 100,000 annotations.

``python -m experiments.bench.data_convert_bench [--quick] [--annotations N] [--per-image K]``

Generates, in a temporary directory, ``N / K`` tiny PNG images (random sizes 8-24 px,
written once; images are embedded in the dataset, so ``convert`` must read every file:
the header for the size check, the bytes for the ``image`` column), an instances file with
``N`` annotations (``K`` per image, rectangle polygons, 5 categories) and a questions file
with one question per image referring to all its ``K`` annotations. Then it times
``visgrpo-data convert coco`` end to end (COCO index, per-record validation, Arrow shards,
final ``save_to_disk``) and reports records/s and annotations/s. Generation is not timed.
Defaults: N = 100,000, K = 5 (20,000 images/records); ``--quick``: N = 10,000. Last stdout
line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(root: Path, n_ann: int, per_image: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """Write images, instances and questions; return their paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    n_img = max(1, n_ann // per_image)
    img_dir = root / "images"
    img_dir.mkdir()
    images, anns, questions = [], [], []
    sizes = rng.integers(8, 25, size=(n_img, 2))  # [n_img, 2] width, height
    tiles = {}
    for i in range(n_img):
        w, h = int(sizes[i, 0]), int(sizes[i, 1])
        name = f"{i:07d}.png"
        if (w, h) not in tiles:
            tiles[(w, h)] = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        tiles[(w, h)].save(img_dir / name)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        ids = []
        for _ in range(per_image if i < n_img - 1 else n_ann - per_image * (n_img - 1)):
            x0, y0 = int(rng.integers(0, w - 2)), int(rng.integers(0, h - 2))
            bw, bh = int(rng.integers(1, w - x0)), int(rng.integers(1, h - y0))
            aid = len(anns) + 1
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(rng.integers(1, 6)),
                         "bbox": [x0, y0, bw, bh], "area": bw * bh, "iscrowd": 0,
                         "segmentation": [[x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]]})  # fmt: skip
            ids.append(aid)
        questions.append({"id": f"q{i}", "image_id": i + 1, "question": "How many objects?",
                          "answer": str(len(ids)), "answer_type": "number", "ann_ids": ids})  # fmt: skip
    cats = [{"id": c, "name": f"cat{c}"} for c in range(1, 6)]
    inst = root / "instances.json"
    inst.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    qpath = root / "questions.jsonl"
    qpath.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return inst, qpath, img_dir


def main(argv: list[str] | None = None) -> dict:
    from data_tools.cli import main as data_main
    from visgrpo.data.io import load_dataset_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10,000 annotations")
    p.add_argument("--annotations", type=int, default=None)
    p.add_argument("--per-image", type=int, default=5)
    p.add_argument("--check-images", default="verify", choices=("header", "verify", "decode"))
    p.add_argument("--out", default=None, help="also write the JSON summary here")
    args = p.parse_args(argv)
    n_ann = args.annotations or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="convert_bench_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        inst, qpath, img_dir = generate(root, n_ann, args.per_image)
        t_gen = time.perf_counter() - t0
        out = root / "ds"
        t0 = time.perf_counter()
        rc = data_main(["convert", "coco", "--instances", str(inst), "--questions", str(qpath),
                        "--image-root", str(img_dir), "--out", str(out), "--no-progress",
                        "--check-images", args.check_images])  # fmt: skip
        elapsed = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"convert coco failed with exit code {rc}")
        ds, _ = load_dataset_dir(out)
        n_rec = len(ds)
        n_boxes = sum(len(b) for b in ds["boxes"])
    assert n_boxes == n_ann, (n_boxes, n_ann)
    summary = {
        "bench": "data_convert",
        "annotations": n_ann,
        "records": n_rec,
        "check_images": args.check_images,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n_rec / elapsed, 1),
        "annotations_per_s": round(n_ann / elapsed, 1),
        "generate_seconds": round(t_gen, 3),
    }
    print(f"convert coco: {n_rec} records / {n_ann} annotations in {elapsed:.2f} s -> "
          f"{summary['records_per_s']:.0f} records/s, {summary['annotations_per_s']:.0f} annotations/s")  # fmt: skip
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
