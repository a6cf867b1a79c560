"""Tiny copies of the nine benchmarks, each in its published Hugging Face schema.

Parquet files are written as ``huggingface-cli download`` leaves them (``data/<split>-00000-
of-00001.parquet``, image columns as ``struct<bytes, path>``), JSON releases with image files
beside them, and one ``save_to_disk`` folder. ``GOLD`` lists, per benchmark, the items the
loader must produce: ``(id, scorer, category, gold answer)``.
"""

from __future__ import annotations

import io
import json
import zipfile
from functools import partial
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


def readme(root: Path, text: str = "---\nlicense: cc-by-4.0\n---\n# dataset card\n") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(text)
    (root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")


def mathvista(root: Path) -> None:
    """``AI4Math/MathVista``: ``data/testmini-*.parquet`` beside two ``test`` shards
    (answers hidden), plus the JSON annotations at the top level.
    """
    schema = pa.schema([("pid", pa.string()), ("question", pa.string()), ("image", pa.string()),
                        ("decoded_image", IMAGE), ("choices", pa.list_(pa.string())),
                        ("unit", pa.string()), ("precision", pa.float64()), ("answer", pa.string()),
                        ("question_type", pa.string()), ("answer_type", pa.string()),
                        ("metadata", pa.struct([("split", pa.string()), ("source", pa.string()),
                                                ("task", pa.string()),
                                                ("skills", pa.list_(pa.string()))])),
                        ("query", pa.string())])
    md = {"split": "testmini", "source": "x", "task": "figure question answering",
          "skills": ["statistical reasoning"]}
    base = {"decoded_image": img(), "unit": None, "metadata": md}
    rows = [
        {**base, "pid": "1", "image": "images/1.jpg", "question": "Which is red?",
         "choices": ["blue", "red", "green"], "precision": None, "answer": "red",
         "question_type": "multi_choice", "answer_type": "text",
         "query": "Hint: ...\nQuestion: Which is red?\nChoices:\n(A) blue\n(B) red\n(C) green"},
        {**base, "pid": "2", "image": "images/2.jpg", "question": "Length?", "choices": None,
         "precision": 1.0, "answer": "1.2", "question_type": "free_form",
         "answer_type": "float", "query": "Length?"},
        {**base, "pid": "3", "image": "images/3.jpg", "question": "How many?", "choices": None,
         "precision": None, "answer": "1000", "question_type": "free_form",
         "answer_type": "integer", "query": "How many?",
         "metadata": {**md, "task": "math word problem",
                      "skills": ["arithmetic reasoning", "statistical reasoning"]}},
        {**base, "pid": "4", "image": "images/4.jpg", "question": "Rate?", "choices": None,
         "precision": 2.0, "answer": "-0.25", "question_type": "free_form",
         "answer_type": "float", "query": "Rate?"},
        {**base, "pid": "5", "image": "images/5.jpg", "question": "Values?", "choices": None,
         "precision": None, "answer": "[2, 9]", "question_type": "free_form",
         "answer_type": "list", "query": "Values?"},
    ]
    readme(root)
    write_parquet(root / "data" / "testmini-00000-of-00001-725687bf7a18d64b.parquet", rows, schema)
    hidden = [{**r, "answer": "", "pid": str(1000 + i)} for i, r in enumerate(rows)]
    write_parquet(root / "data" / "test-00000-of-00002-6b81bd7f7e2065e6.parquet", hidden[:2], schema)
    write_parquet(root / "data" / "test-00001-of-00002-6a611c71596db30f.parquet", hidden[2:], schema)
    (root / "annot_testmini.json").write_text(json.dumps({"1": {"pid": "1"}}))


MATHVERSE_COLS = [("sample_index", pa.string()), ("problem_index", pa.string()),
                  ("problem_version", pa.string()), ("question", pa.string()), ("image", IMAGE),
                  ("answer", pa.string()), ("question_type", pa.string()),
                  ("metadata", pa.struct([("split", pa.string()), ("source", pa.string())])),
                  ("query_wo", pa.string()), ("query_cot", pa.string()),
                  ("question_for_eval", pa.string())]


def mathverse(root: Path) -> None:
    """``AI4Math/MathVerse``: ``testmini.parquet`` and ``testmini_text_only.parquet`` at the
    top level (configs ``testmini`` / ``testmini_text_only``), the JSON twins and
    ``images.zip``. A Vision-Only item has its options only in ``question_for_eval``.
    """
    meta = {"split": "testmini", "source": "GeoQA"}
    choices = "Choices:\nA:30°\nB:45°\nC:60°\nD:90°"
    rows = [
        {"sample_index": "1", "problem_index": "1", "problem_version": "Text Dominant",
         "question": f"Find the angle.\n{choices}", "image": img(), "answer": "B",
         "question_type": "multi-choice", "metadata": meta, "query_wo": "q",
         "query_cot": f"Find the angle.\n{choices}", "question_for_eval": f"Find the angle.\n{choices}"},
        {"sample_index": "5", "problem_index": "1", "problem_version": "Vision Only",
         "question": "", "image": img(), "answer": "B", "question_type": "multi-choice",
         "metadata": meta, "query_wo": "q",
         "query_cot": "According to the question shown in the image, please first conduct "
                      "reasoning, and then answer the question.",
         "question_for_eval": f"Find the angle.\n{choices}"},
        {"sample_index": "6", "problem_index": "2", "problem_version": "Vision Intensive",
         "question": "x?", "image": img(), "answer": "\\frac{1}{2}",
         "question_type": "free-form", "metadata": meta, "query_wo": "q",
         "query_cot": "Find x.", "question_for_eval": "Find x."},
    ]
    readme(root)
    write_parquet(root / "testmini.parquet", rows, pa.schema(MATHVERSE_COLS))
    text_only = [{k: v for k, v in r.items() if k != "image"} for r in rows[:1]]
    write_parquet(root / "testmini_text_only.parquet", text_only,
                  pa.schema([c for c in MATHVERSE_COLS if c[0] != "image"]))
    (root / "testmini.json").write_text(json.dumps(text_only))
    with zipfile.ZipFile(root / "images.zip", "w") as z:
        z.writestr("images/image_1.png", png())


def geometry3k(root: Path) -> None:
    """``hiyouga/geometry3k``: ``data/{train,validation,test}-*.parquet``."""
    schema = pa.schema([("images", pa.list_(IMAGE)), ("problem", pa.string()), ("answer", pa.string())])
    rows = [{"images": [img()], "problem": "<image>Find x.", "answer": "3\\sqrt{2}"},
            {"images": [img(64, 32)], "problem": "<image>Find y.", "answer": "12"}]
    readme(root)
    write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    write_parquet(root / "data" / "train-00000-of-00001.parquet", rows[:1], schema)
    write_parquet(root / "data" / "validation-00000-of-00001.parquet", rows[:1], schema)


# We-Math: problem 1 (two steps) and problem 1 (three steps) share the image file names
# 1-1.png / 1-multi.png across 2steps/image and 3steps/image, as 990 real rows do.
WEMATH_ROWS = [("2steps_1", "2steps_1", "A", "2steps/image/1-1.png"),
               ("2steps_1", "2steps_2", "B", "2steps/image/1-2.png"),
               ("2steps_1", "2steps_multi", "C", "2steps/image/1-multi.png"),
               ("3steps_1", "3steps_1", "D", "3steps/image/1-1.png"),
               ("3steps_1", "3steps_2", "A", "3steps/image/1-2.png"),
               ("3steps_1", "3steps_3", "B", "3steps/image/1-3.png"),
               ("3steps_1", "3steps_multi", "E", "3steps/image/1-multi.png")]


def wemath(root: Path, parquet: bool = True) -> None:
    """``We-Math/We-Math``: ``data/testmini-*.parquet`` (images embedded in the
    ``image_path`` column), ``testmini.json`` and ``testmini.zip`` as downloaded (not
    unpacked; the archive's step folders sit under ``testmini/``), and
    ``knowledge_structure_nodes.json``.
    """
    readme(root)
    rows = []
    with zipfile.ZipFile(root / "testmini.zip", "w") as z:
        for n, (pid, key, answer, path) in enumerate(WEMATH_ROWS):
            w = 40 + 4 * n
            z.writestr(f"testmini/{path}", png(w, 30))
            folder, name = path.rsplit("/", 1)
            z.writestr(f"__MACOSX/testmini/{folder}/._{name}", b"mac resource fork")
            rows.append({"ID": pid, "split": "testmini", "knowledge concept": "Angles",
                         "question": "What is the angle?",
                         "option": "A. 30;B. 45;C. 60;D. 90;E. No correct answer",
                         "answer": answer, "image_path": path, "key": key,
                         "question number": n + 1, "knowledge concept description": "..."})
    (root / "testmini.json").write_text(json.dumps(rows, indent=1))
    (root / "knowledge_structure_nodes.json").write_text(json.dumps([{"full node": "a_b_c"}]))
    if parquet:
        cols = [("ID", pa.string()), ("split", pa.string()), ("knowledge concept", pa.string()),
                ("question", pa.string()), ("option", pa.string()), ("answer", pa.string()),
                ("image_path", IMAGE), ("key", pa.string()), ("question number", pa.int64()),
                ("knowledge concept description", pa.string())]
        embedded = [{**r, "image_path": {"bytes": png(40 + 4 * n, 30),
                                         "path": r["image_path"].rsplit("/", 1)[1]}}
                    for n, r in enumerate(rows)]
        write_parquet(root / "data" / "testmini-00000-of-00001-adbfe22dcd3558e6.parquet",
                      embedded, pa.schema(cols))


def logicvista(root: Path) -> None:
    """The authors' ``data/``: ``dataset.json`` (``{"v1_0": {...}}``) and ``images/``, with
    the odd answers of the real file: several letters, a number, an empty string.
    """
    (root / "data" / "images").mkdir(parents=True)
    data = {}
    for key, ans, skill, capability in (
            ("v1_0", "A", ["inductive"], ["diagram", "ocr"]),
            ("v1_1", "B, D", ["deductive"], ["diagram"]),
            ("v1_20", "3", ["deductive", "numerical"], ["ocr"]),
            ("v1_382", "", ["spatial"], ["diagram"])):
        (root / "data" / "images" / f"{key}.png").write_bytes(png())
        data[key] = {"imagename": f"{key}.png", "question": "Which? A. x B. y C. z D. w",
                     "answer": ans, "reasoning": "...", "skill": skill,
                     "capability": capability, "imagesource": "aptitudetests"}
    (root / "data" / "dataset.json").write_text(json.dumps(data))
    (root / "README.md").write_text("# LogicVista\n")


def mmstar(root: Path) -> None:
    """``Lin-Chen/MMStar``: one ``mmstar.parquet`` at the top level (split ``val``)."""
    schema = pa.schema([("index", pa.int64()), ("question", pa.string()), ("image", IMAGE),
                        ("answer", pa.string()), ("category", pa.string()),
                        ("l2_category", pa.string()), ("meta_info", pa.struct([("source", pa.string())]))])
    rows = [{"index": i, "question": "What colour?\nOptions: A: red, B: blue, C: green, D: grey",
             "image": img(), "answer": a, "category": c, "l2_category": "x",
             "meta_info": {"source": "s"}}
            for i, (a, c) in enumerate([("A", "coarse perception"), ("C", "math")])]
    readme(root)
    write_parquet(root / "mmstar.parquet", rows, schema)


HALLUSION_COLS = ["category", "subcategory", "visual_input", "set_id", "figure_id",
                  "sample_note", "question_id", "question", "gt_answer_details", "gt_answer",
                  "filename"]


def hallusionbench(root: Path) -> None:
    """``lmms-lab/HallusionBench``: ``data/image-*.parquet`` and ``data/non_image-*.parquet``
    (a VS set: the question without a figure, ``figure_id`` 0, then on the original and
    the edited figure, 1 and 2; a VD set: one question on figures 0 and 1).
    """
    schema = pa.schema([(c, pa.string()) for c in HALLUSION_COLS] + [("image", IMAGE)])

    def row(cat, sub, vis, set_id, fig, qid, gt, image=True):
        return {"category": cat, "subcategory": sub, "visual_input": vis, "set_id": set_id,
                "figure_id": fig, "sample_note": "n", "question_id": qid,
                "question": f"Is {set_id}/{fig}/{qid} true?", "gt_answer_details": "...",
                "gt_answer": gt, "filename": f"./{cat}/{sub}/{set_id}_{fig}.png" if image else None,
                "image": img() if image else None}
    images = [row("VS", "chart", "1", "0", "1", "0", "1"), row("VS", "chart", "2", "0", "2", "0", "0"),
              row("VD", "illusion", "1", "1", "0", "0", "1"), row("VD", "illusion", "2", "1", "1", "0", "0")]
    readme(root)
    write_parquet(root / "data" / "image-00000-of-00001.parquet", images, schema)
    write_parquet(root / "data" / "non_image-00000-of-00001.parquet",
                  [row("VS", "chart", "0", "0", "0", "0", "1", image=False)], schema)


def pope(root: Path) -> None:
    """``lmms-lab/POPE``: ``data/test-*.parquet`` (config ``default``) and the ``Full``
    config's ``Full/{adversarial,popular,random}-*.parquet``, which are not read.
    """
    schema = pa.schema([("id", pa.string()), ("question_id", pa.string()),
                        ("question", pa.string()), ("answer", pa.string()),
                        ("image_source", pa.string()), ("image", IMAGE), ("category", pa.string())])
    rows = [{"id": str(i), "question_id": str(i + 1), "question": f"Is there a {obj} in the image?",
             "answer": ans, "image_source": f"COCO_val2014_{i:012d}", "image": img(),
             "category": cat}
            for i, (obj, ans, cat) in enumerate([("dog", "yes", "adversarial"),
                                                  ("car", "no", "adversarial"),
                                                  ("cup", "yes", "popular"),
                                                  ("cat", "no", "random")])]
    readme(root)
    write_parquet(root / "data" / "test-00000-of-00002.parquet", rows[:2], schema)
    write_parquet(root / "data" / "test-00001-of-00002.parquet", rows[2:], schema)
    for split in ("adversarial", "popular", "random"):
        write_parquet(root / "Full" / f"{split}-00000-of-00001.parquet", rows[:1], schema)


REFCOCO_BOXES = [[5.0, 4.0, 20.0, 16.0], [30.0, 10.0, 18.0, 25.0]]  # COCO xywh


def refcoco(root: Path, splits: tuple[str, ...] = ("test", "testA", "testB")) -> None:
    """``lmms-lab/RefCOCO``: ``data/{val,test,testA,testB}-*.parquet`` (RefCOCO+: val,
    testA, testB; RefCOCOg: val, test).
    """
    schema = pa.schema([("question_id", pa.string()), ("image", IMAGE), ("question", pa.string()),
                        ("answer", pa.list_(pa.string())), ("segmentation", pa.list_(pa.float32())),
                        ("bbox", pa.list_(pa.float32())), ("iscrowd", pa.int8()),
                        ("file_name", pa.string())])
    rows = [{"question_id": str(i), "image": img(56, 42) if i == 0 else img(64, 48),
             "question": "Please carefully observe the area circled in the image and come up with a caption "
                         "for the area.",
             "answer": exprs, "segmentation": [0.0] * 6, "bbox": box, "iscrowd": 0,
             "file_name": f"COCO_train2014_{i:012d}.jpg"}
            for i, (exprs, box) in enumerate([(["left dog", "brown dog"], REFCOCO_BOXES[0]),
                                               (["man on right"], REFCOCO_BOXES[1])])]
    readme(root)
    write_parquet(root / "data" / "val-00000-of-00002.parquet", rows[:1], schema)
    write_parquet(root / "data" / "val-00001-of-00002.parquet", rows[1:], schema)
    for split, n in (("test", 1), ("testA", 2), ("testB", 1)):
        if split not in splits:
            continue
        write_parquet(root / "data" / f"{split}-00000-of-00001.parquet",
                      [{**r, "question_id": f"{split}{r['question_id']}"} for r in rows[:n]], schema)


BUILDERS = {"mathvista_testmini": mathvista, "mathverse_testmini": mathverse,
            "geometry3k": geometry3k, "wemath": wemath, "logicvista": logicvista,
            "mmstar": mmstar, "hallusionbench": hallusionbench, "pope": pope, "refcoco": refcoco}
# the other registry entries: (builder, its folder name), several splits of one download
SPLIT_BUILDERS = {"refcocoplus": partial(refcoco, splits=("testA", "testB")),
                  "refcocog": partial(refcoco, splits=("test",))}
FIXTURE_OF = {"refcoco_test": "refcoco", "refcoco_testA": "refcoco", "refcoco_testB": "refcoco",
              **{f"refcocoplus_{s}": "refcocoplus" for s in ("val", "testA", "testB")},
              **{f"refcocog_{s}": "refcocog" for s in ("val", "test")}}

GOLD = {
    "mathvista_testmini": [("1", "mathvista", "multi_choice", "red"),
                           ("2", "mathvista", "float", "1.2"),
                           ("3", "mathvista", "integer", "1000"),
                           ("4", "mathvista", "float", "-0.25"),
                           ("5", "mathvista", "list", "[2, 9]")],
    "mathverse_testmini": [("1", "choice", "Text Dominant", "B"),
                           ("5", "choice", "Vision Only", "B"),
                           ("6", "math", "Vision Intensive", "\\frac{1}{2}")],
    "geometry3k": [("0", "math", "free-form", "3\\sqrt{2}"), ("1", "math", "free-form", "12")],
    "wemath": [(f"{pid}/{key}", "wemath", "S1" if not key.endswith("multi") else f"S{pid[0]}", a)
               for pid, key, a, _ in WEMATH_ROWS],
    "logicvista": [("v1_0", "logicvista", "reasoning", "A"),
                   ("v1_1", "logicvista", "reasoning", "B, D"),
                   ("v1_20", "logicvista", "reasoning", "3"),
                   ("v1_382", "logicvista", "reasoning", "")],
    "mmstar": [("0", "choice", "coarse perception", "A"), ("1", "choice", "math", "C")],
    "hallusionbench": [("VS_chart_0_1_0", "yorn", "VS", "yes"),
                       ("VS_chart_0_2_0", "yorn", "VS", "no"),
                       ("VD_illusion_1_0_0", "yorn", "VD", "yes"),
                       ("VD_illusion_1_1_0", "yorn", "VD", "no"),
                       ("VS_chart_0_0_0", "yorn", "VS", "yes")],
    "pope": [("1", "pope", "adversarial", "yes"), ("2", "pope", "adversarial", "no"),
             ("3", "pope", "popular", "yes"), ("4", "pope", "random", "no")],
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
