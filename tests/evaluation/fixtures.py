"""Tiny copies of the nine benchmarks, each in its published Hugging Face schema.

Parquet files are written as ``huggingface-cli download`` leaves them (``data/<split>-00000-
of-00001.parquet``, image columns as ``struct<bytes, path>``), JSON releases with image files
beside them, and one ``save_to_disk`` folder. ``GOLD`` lists, per benchmark, the items the
loader must produce: ``(id, scorer, category, gold answer)``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(w: int = 56, h: int = 42, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def img(w: int = 56, h: int = 42) -> dict:
    return {"bytes": png(w, h), "path": None}


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def mathvista(root: Path) -> None:
    schema = pa.schema([("pid", pa.string()), ("question", pa.string()), ("image", pa.string()),
                        ("decoded_image", IMAGE), ("choices", pa.list_(pa.string())),
                        ("unit", pa.string()), ("precision", pa.float64()), ("answer", pa.string()),
                        ("question_type", pa.string()), ("answer_type", pa.string()),
                        ("metadata", pa.struct([("split", pa.string())])), ("query", pa.string())])
    base = {"image": "images/1.jpg", "decoded_image": img(), "unit": None,
            "metadata": {"split": "testmini"}}
    rows = [
        {**base, "pid": "1", "question": "Which is red?", "choices": ["blue", "red", "green"],
         "precision": None, "answer": "red", "question_type": "multi_choice",
         "answer_type": "text", "query": "Hint: ...\nQuestion: Which is red?\nChoices:\n(A) blue\n(B) red\n(C) green"},
        {**base, "pid": "2", "question": "Length?", "choices": None, "precision": 1.0,
         "answer": "1.2", "question_type": "free_form", "answer_type": "float", "query": "Length?"},
        {**base, "pid": "3", "question": "How many?", "choices": None, "precision": None,
         "answer": "1000", "question_type": "free_form", "answer_type": "integer", "query": "How many?"},
    ]
    write_parquet(root / "data" / "testmini-00000-of-00001.parquet", rows, schema)
    # the test split must be ignored
    write_parquet(root / "data" / "test-00000-of-00002.parquet", rows[:1], schema)


def mathverse(root: Path) -> None:
    schema = pa.schema([("sample_index", pa.string()), ("problem_index", pa.string()),
                        ("problem_version", pa.string()), ("question", pa.string()),
                        ("image", IMAGE), ("answer", pa.string()), ("question_type", pa.string()),
                        ("metadata", pa.struct([("split", pa.string())])),
                        ("query_wo", pa.string()), ("query_cot", pa.string()),
                        ("question_for_eval", pa.string())])
    common = {"problem_index": "1", "image": img(), "metadata": {"split": "testmini"},
              "query_wo": "q", "question_for_eval": "q"}
    rows = [
        {**common, "sample_index": "1", "problem_version": "Text Dominant", "question": "Pick",
         "answer": "B", "question_type": "multi-choice", "query_cot": "Choices: A:1 B:2"},
        {**common, "sample_index": "2", "problem_version": "Vision Only", "question": "x?",
         "answer": "\\frac{1}{2}", "question_type": "free-form", "query_cot": "Find x."},
    ]
    write_parquet(root / "testmini-00000-of-00001.parquet", rows, schema)


def geometry3k(root: Path) -> None:
    schema = pa.schema([("images", pa.list_(IMAGE)), ("problem", pa.string()), ("answer", pa.string())])
    rows = [{"images": [img()], "problem": "<image>Find x.", "answer": "3\\sqrt{2}"},
            {"images": [img(64, 32)], "problem": "<image>Find y.", "answer": "12"}]
    write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    write_parquet(root / "data" / "train-00000-of-00001.parquet", rows[:1], schema)
    write_parquet(root / "data" / "testmini-00000-of-00001.parquet", rows[:1], schema)  # not read


def wemath(root: Path) -> None:
    (root / "testmini" / "images").mkdir(parents=True)
    rows = []
    for i, (qid, ans) in enumerate([("1steps_1", "C"), ("2steps_1_1", "A")]):
        name = f"{i}.png"
        (root / "testmini" / "images" / name).write_bytes(png())
        rows.append({"ID": qid, "split": "testmini", "knowledge concept": "Angles",
                     "question": "What is the angle?", "option": "A. 30; B. 45; C. 60; D. 90",
                     "answer": ans, "image_path": f"images/{name}", "key": "1",
                     "question number": i + 1, "knowledge concept description": "..."})
    (root / "testmini.json").write_text(json.dumps(rows))


def logicvista(root: Path) -> None:
    (root / "data" / "images").mkdir(parents=True)
    data = {}
    for key, ans, skill in (("1", "A", ["inductive"]), ("2", "B, D", ["deductive"])):
        (root / "data" / "images" / f"{key}.jpg").write_bytes(png())
        data[key] = {"imagename": f"{key}.jpg", "question": "Which? A. x B. y C. z D. w",
                     "answer": ans, "reasoning": "...", "skill": skill,
                     "broad_capability": ["diagrams"]}
    (root / "data" / "dataset.json").write_text(json.dumps(data))


def mmstar(root: Path) -> None:
    schema = pa.schema([("index", pa.int64()), ("question", pa.string()), ("image", IMAGE),
                        ("answer", pa.string()), ("category", pa.string()),
                        ("l2_category", pa.string()), ("meta_info", pa.struct([("source", pa.string())]))])
    rows = [{"index": i, "question": "What colour?\nOptions: A: red, B: blue, C: green, D: grey",
             "image": img(), "answer": a, "category": c, "l2_category": "x",
             "meta_info": {"source": "s"}}
            for i, (a, c) in enumerate([("A", "coarse perception"), ("C", "math")])]
    write_parquet(root / "mmstar.parquet", rows, schema)


def hallusionbench(root: Path) -> None:
    cols = ["category", "subcategory", "visual_input", "set_id", "figure_id", "sample_note",
            "question_id", "question", "gt_answer_details", "gt_answer", "filename"]
    schema = pa.schema([(c, pa.string()) for c in cols] + [("image", IMAGE)])
    rows = [
        {"category": "VD", "subcategory": "illusion", "visual_input": "1", "set_id": "0",
         "figure_id": "0", "sample_note": "n", "question_id": "0", "question": "Is it red?",
         "gt_answer_details": "It is red.", "gt_answer": "1", "filename": "./VD/0_0.png", "image": img()},
        {"category": "VS", "subcategory": "chart", "visual_input": "0", "set_id": "1",
         "figure_id": "0", "sample_note": "n", "question_id": "1", "question": "Is 2 > 3?",
         "gt_answer_details": "No.", "gt_answer": "0", "filename": None, "image": None},
    ]
    write_parquet(root / "data" / "image-00000-of-00001.parquet", rows, schema)
    write_parquet(root / "data" / "non_image-00000-of-00001.parquet", rows[1:], schema)  # not read


def pope(root: Path) -> None:
    import datasets

    feats = datasets.Features({"id": datasets.Value("string"), "question_id": datasets.Value("string"),
                               "question": datasets.Value("string"), "answer": datasets.Value("string"),
                               "image_source": datasets.Value("string"), "image": datasets.Image(),
                               "category": datasets.Value("string")})
    rows = {"id": ["0", "1"], "question_id": ["1", "2"],
            "question": ["Is there a dog in the image?", "Is there a car in the image?"],
            "answer": ["yes", "no"], "image_source": ["COCO_1", "COCO_2"],
            "image": [Image.new("RGB", (56, 42)), Image.new("RGB", (42, 56))],
            "category": ["adversarial", "random"]}
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(str(root))


REFCOCO_BOXES = [[5.0, 4.0, 20.0, 16.0], [30.0, 10.0, 18.0, 25.0]]  # COCO xywh


def refcoco(root: Path) -> None:
    schema = pa.schema([("question_id", pa.string()), ("image", IMAGE), ("question", pa.string()),
                        ("answer", pa.list_(pa.string())), ("segmentation", pa.list_(pa.float32())),
                        ("bbox", pa.list_(pa.float32())), ("iscrowd", pa.int64()),
                        ("file_name", pa.string())])
    rows = [{"question_id": str(i), "image": img(56, 42) if i == 0 else img(64, 48),
             "question": "Please carefully observe the area circled in the image and come up with a caption for the area.",
             "answer": exprs, "segmentation": [0.0] * 6, "bbox": box, "iscrowd": 0,
             "file_name": f"COCO_train2014_{i:012d}.jpg"}
            for i, (exprs, box) in enumerate([(["left dog", "brown dog"], REFCOCO_BOXES[0]),
                                               (["man on right"], REFCOCO_BOXES[1])])]
    write_parquet(root / "data" / "val-00000-of-00001.parquet", rows, schema)


BUILDERS = {"mathvista_testmini": mathvista, "mathverse_testmini": mathverse,
            "geometry3k": geometry3k, "wemath": wemath, "logicvista": logicvista,
            "mmstar": mmstar, "hallusionbench": hallusionbench, "pope": pope, "refcoco": refcoco}

GOLD = {
    "mathvista_testmini": [("1", "choice", "multi_choice", "B"), ("2", "number", "float", "1.2"),
                           ("3", "number", "integer", "1000")],
    "mathverse_testmini": [("1", "choice", "Text Dominant", "B"),
                           ("2", "math", "Vision Only", "\\frac{1}{2}")],
    "geometry3k": [("0", "math", "free-form", "3\\sqrt{2}"), ("1", "math", "free-form", "12")],
    "wemath": [("1steps_1", "choice", "1-step", "C"), ("2steps_1_1", "choice", "2-step", "A")],
    "logicvista": [("1", "choice", "inductive", "A"), ("2", "choice", "deductive", "B, D")],
    "mmstar": [("0", "choice", "coarse perception", "A"), ("1", "choice", "math", "C")],
    "hallusionbench": [("VD_illusion_0_0_0", "yesno", "VD", "yes"),
                       ("VS_chart_1_0_1", "yesno", "VS", "no")],
    "pope": [("1", "yesno", "adversarial", "yes"), ("2", "yesno", "random", "no")],
    "refcoco": [("0#0", "box", "grounding", [5.0, 4.0, 25.0, 20.0]),
                ("0#1", "box", "grounding", [5.0, 4.0, 25.0, 20.0]),
                ("1#0", "box", "grounding", [30.0, 10.0, 48.0, 35.0])],
}


def build_all(root: Path) -> Path:
    """Every benchmark under ``root/<name>`` (the ``--data-root`` layout)."""
    for name, build in BUILDERS.items():
        build(root / name)
    return root


if __name__ == "__main__":  # python -m tests.evaluation.fixtures OUT (the README's dry run)
    import sys

    print(build_all(Path(sys.argv[1])))
