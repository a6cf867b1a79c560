"""Tiny copies of the breadth benchmarks, each in the layout its download leaves.

``huggingface-cli download --repo-type dataset <repo> --local-dir X`` layouts: parquet
shards named ``<split>-0000k-of-0000n.parquet`` (under ``data/`` or a config folder),
image columns as ``struct<bytes, path>``, the splits and configs a loader must skip, and
the odd records the real data has (MMMU's options as Python-literal text, open questions
with a list answer, a repeated ``<image 1>`` tag; CV-Bench's ``"(B)"`` answers; MMVP's CSV
with a space in the image folder name). ``GOLD`` lists, per benchmark, the items the
loader must produce: ``(id, scorer, category, gold answer)``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa

from tests.evaluation.fixtures import IMAGE, img, png, write_parquet


def mathvision(root: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("question", pa.string()),
                        ("options", pa.list_(pa.string())), ("image", pa.string()),
                        ("decoded_image", IMAGE), ("answer", pa.string()),
                        ("solution", pa.string()), ("level", pa.int64()), ("subject", pa.string())])
    rows = [
        {"id": "1", "question": "<image1>\nWhich figure is shaded?", "options": ["1", "2", "3", "4", "5"],
         "image": "images/1.jpg", "decoded_image": img(), "answer": "C", "solution": None,
         "level": 3, "subject": "metric geometry - area"},
        {"id": "2", "question": "<image1>\nHow long is the side?", "options": [],
         "image": "images/2.jpg", "decoded_image": img(), "answer": "\\frac{3}{2}",
         "solution": None, "level": 2, "subject": "algebra"},
        {"id": "3", "question": "<image1>\nFind the point.", "options": [],
         "image": "images/3.jpg", "decoded_image": img(), "answer": "(2,3)", "solution": None,
         "level": 1, "subject": "analytic geometry"},
    ]
    write_parquet(root / "data" / "test-00000-of-00001-3532b8d3f1b4047a.parquet", rows, schema)
    write_parquet(root / "data" / "testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet", rows[:1], schema)


def _mmmu_schema(extra: list[tuple[str, pa.DataType]]) -> pa.Schema:
    images = [(f"image_{k}", IMAGE) for k in range(1, 8)]
    return pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
                      ("explanation", pa.string()), *images, ("img_type", pa.string()),
                      ("answer", pa.string()), ("topic_difficulty", pa.string()), *extra])


def _no_images() -> dict:
    return {f"image_{k}": None for k in range(1, 8)}


def mmmu(root: Path) -> None:
    schema = _mmmu_schema([("question_type", pa.string()), ("subfield", pa.string())])
    acc = [
        {**_no_images(), "id": "validation_Accounting_1", "image_1": img(),
         "question": "<image 1> What is the net income?",
         "options": "['$1,000', '$2,000', '$3,000', '$4,000']", "explanation": "",
         "img_type": "['Tables']", "answer": "B", "topic_difficulty": "Easy",
         "question_type": "multiple-choice", "subfield": "Financial Accounting"},
        {**_no_images(), "id": "validation_Accounting_2", "image_1": img(), "image_2": img(30, 20),
         "question": "Compare <image 2> with <image 1>. What is the ratio?", "options": "[]",
         "explanation": "", "img_type": "['Tables']", "answer": "['0.5', '1/2']",
         "topic_difficulty": "Medium", "question_type": "open", "subfield": "Managerial"},
    ]
    music = [
        {**_no_images(), "id": "validation_Music_3", "image_1": img(),
         "question": "Which interval is shown in <image 1>? See <image 1> again.",
         "options": "['major third', 'perfect fifth', 'minor sixth', 'octave']", "explanation": "",
         "img_type": "['Sheet Music']", "answer": "D", "topic_difficulty": "Hard",
         "question_type": "multiple-choice", "subfield": "Music"},
        {**_no_images(), "id": "validation_Music_4", "image_1": img(),
         "question": "How many beats per bar in <image 1>?", "options": "[]", "explanation": "",
         "img_type": "['Sheet Music']", "answer": "3", "topic_difficulty": "Easy",
         "question_type": "open", "subfield": "Music"},
    ]
    for subject, rows in (("Accounting", acc), ("Music", music)):
        write_parquet(root / subject / "validation-00000-of-00001.parquet", rows, schema)
        # dev and test (answers withheld) must be skipped
        write_parquet(root / subject / "dev-00000-of-00001.parquet", rows[:1], schema)
        write_parquet(root / subject / "test-00000-of-00001.parquet",
                      [{**rows[0], "answer": "?"}], schema)


def mmmu_pro(root: Path) -> None:
    std = _mmmu_schema([("subject", pa.string())])
    options10 = str([f"{v} kg" for v in range(10, 20)])
    write_parquet(root / "standard (10 options)" / "test-00000-of-00001.parquet", [
        {**_no_images(), "id": "test_Physics_1", "image_1": img(),
         "question": "<image 1> What is the mass?", "options": options10, "explanation": "",
         "img_type": "['Diagrams']", "answer": "J", "topic_difficulty": "Hard", "subject": "Physics"},
        {**_no_images(), "id": "test_Art_2", "image_1": img(),
         "question": "Which style is <image 1>?",
         "options": "['Baroque', 'Cubism', 'Impressionism', 'Pop art', 'Gothic', 'Rococo', "
                    "'Dada', 'Fauvism', 'Futurism', 'Minimalism']",
         "explanation": "", "img_type": "['Paintings']", "answer": "B",
         "topic_difficulty": "Easy", "subject": "Art"},
    ], std)
    vision = pa.schema([("id", pa.string()), ("image", IMAGE), ("options", pa.string()),
                        ("answer", pa.string()), ("subject", pa.string())])
    write_parquet(root / "vision" / "test-00000-of-00001.parquet", [
        {"id": "test_Physics_1", "image": img(), "options": options10, "answer": "J",
         "subject": "Physics"},
    ], vision)


def chartqa(root: Path) -> None:
    schema = pa.schema([("type", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                        ("image", IMAGE)])
    rows = [
        {"type": "human_test", "question": "What is the peak value?", "answer": "41.5", "image": img()},
        {"type": "human_test", "question": "Which country is highest?", "answer": "Japan", "image": img()},
        {"type": "augmented_test", "question": "What share is blue?", "answer": "12%", "image": img()},
        {"type": "augmented_test", "question": "Value of Mon?", "answer": "0", "image": img()},
    ]
    write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)


def chartqa_m4(root: Path) -> None:
    """HuggingFaceM4/ChartQA: ``query``, ``label`` (a list), ``human_or_machine``."""
    schema = pa.schema([("image", IMAGE), ("query", pa.string()), ("label", pa.list_(pa.string())),
                        ("human_or_machine", pa.int64())])
    rows = [{"image": img(), "query": "What is the peak value?", "label": ["41.5"],
             "human_or_machine": 0},
            {"image": img(), "query": "What share is blue?", "label": ["12%"], "human_or_machine": 1}]
    write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    write_parquet(root / "data" / "train-00000-of-00003.parquet", rows[:1], schema)
    write_parquet(root / "data" / "val-00000-of-00001.parquet", rows[:1], schema)


def cv_bench(root: Path) -> None:
    schema = pa.schema([("idx", pa.int64()), ("type", pa.string()), ("task", pa.string()),
                        ("image", IMAGE), ("question", pa.string()), ("choices", pa.list_(pa.string())),
                        ("answer", pa.string()), ("prompt", pa.string()), ("filename", pa.string()),
                        ("source", pa.string()), ("source_dataset", pa.string()),
                        ("source_filename", pa.string()), ("target_class", pa.string()),
                        ("target_size", pa.int64()), ("bbox", pa.list_(pa.float64()))])

    def row(idx, kind, task, source, choices, answer):
        q = f"How many cars are in the image? ({kind} {task})"
        listed = "".join(f"\n({chr(65 + k)}) {c}" for k, c in enumerate(choices))
        return {"idx": idx, "type": kind, "task": task, "image": img(), "question": q,
                "choices": choices, "answer": answer,
                "prompt": f"{q} Select from the following choices.{listed}",
                "filename": f"img/{kind}/{task.lower()}/{source.lower()}_{idx}.png", "source": source,
                "source_dataset": source, "source_filename": "x.jpg", "target_class": None,
                "target_size": None, "bbox": None}

    write_parquet(root / "test_2d.parquet", [
        row(0, "2D", "Count", "ADE20K", ["0", "1", "2", "3"], "(C)"),
        row(1, "2D", "Relation", "COCO", ["left", "right"], "(A)"),
        row(2, "2D", "Count", "COCO", ["4", "5", "6"], "(B)"),
    ], schema)
    write_parquet(root / "test_3d.parquet", [
        row(3, "3D", "Depth", "Omni3D", ["lamp", "chair"], "(B)"),
        row(4, "3D", "Distance", "Omni3D", ["table", "sofa"], "(A)"),
    ], schema)
    (root / "test_2d.jsonl").write_text("{}\n")  # the JSONL copy beside must be ignored


def clevr_count(root: Path) -> None:
    schema = pa.schema([("images", pa.list_(IMAGE)), ("problem", pa.string()), ("answer", pa.string())])
    rows = [{"images": [img()], "problem": "<image>How many items are there in the image?",
             "answer": str(n)} for n in (3, 10)]
    write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    write_parquet(root / "data" / "train-00000-of-00021.parquet", rows[:1], schema)


def mmvp(root: Path) -> None:
    (root / "MMVP Images").mkdir(parents=True, exist_ok=True)
    rows = [("1", "Are the butterfly's feet visible?", "(a) Yes (b) No", "(a)"),
            ("2", "Are the butterfly's feet visible?", "(a) Yes (b) No", "(b)"),
            ("3", "Is the door of the truck open or closed?", "(a) Open (b) Closed", "(b)"),
            ("4", "Is the door of the truck open or closed?", "(a) Open (b) Closed", "(a)")]
    with (root / "Questions.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Index", "Question", "Options", "Correct Answer"])
        w.writerows(rows)
    for index, *_ in rows:
        (root / "MMVP Images" / f"{index}.jpg").write_bytes(png())


def mmvp_lmms(root: Path) -> None:
    """lmms-lab-eval/MMVP: the same questions as parquet with an image column."""
    schema = pa.schema([("Index", pa.int32()), ("Question", pa.string()), ("Options", pa.string()),
                        ("Correct Answer", pa.string()), ("image", IMAGE)])
    rows = [{"Index": 1, "Question": "Are the butterfly's feet visible?", "Options": "(a) Yes (b) No",
             "Correct Answer": "(a)", "image": img()},
            {"Index": 2, "Question": "Are the butterfly's feet visible?", "Options": "(a) Yes (b) No",
             "Correct Answer": "(b)", "image": img()}]
    write_parquet(root / "data" / "train-00000-of-00001.parquet", rows, schema)


def blink(root: Path) -> None:
    schema = pa.schema([("idx", pa.string()), ("question", pa.string()), ("sub_task", pa.string()),
                        *[(f"image_{k}", IMAGE) for k in range(1, 5)],
                        ("choices", pa.list_(pa.string())), ("answer", pa.string()),
                        ("prompt", pa.string()), ("explanation", pa.string())])

    def row(idx, task, n_images, choices, answer):
        q = "Which point is closer to the camera?"
        listed = "".join(f"\n({chr(65 + k)}) {c}" for k, c in enumerate(choices))
        return {"idx": idx, "question": q, "sub_task": task.replace("_", " "),
                **{f"image_{k}": img() if k <= n_images else None for k in range(1, 5)},
                "choices": choices, "answer": answer,
                "prompt": f"{q}\nSelect from the following choices.{listed}", "explanation": ""}

    write_parquet(root / "Relative_Depth" / "val-00000-of-00001.parquet",
                  [row("val_Relative_Depth_1", "Relative_Depth", 1, ["A", "B"], "(A)"),
                   row("val_Relative_Depth_2", "Relative_Depth", 1, ["A", "B"], "(B)")], schema)
    write_parquet(root / "Jigsaw" / "val-00000-of-00001.parquet",
                  [row("val_Jigsaw_1", "Jigsaw", 3, ["the first piece", "the second piece"], "(B)")],
                  schema)
    write_parquet(root / "Jigsaw" / "test-00000-of-00001.parquet",
                  [row("test_Jigsaw_1", "Jigsaw", 3, ["x", "y"], "")], schema)


def dynamath(root: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("image", pa.string()),
                        ("decoded_image", IMAGE), ("ground_truth", pa.string()),
                        ("answer_type", pa.string()), ("subject", pa.string()),
                        ("knowledge_level", pa.string())])
    for k, (slope, choice) in enumerate((("0.5", "B"), ("-2.0", "A")), start=1):
        rows = [{"id": "1", "question": "What is the slope of the line?", "image": "image/image1.png",
                 "decoded_image": img(), "ground_truth": slope, "answer_type": "float",
                 "subject": "AG", "knowledge_level": "high school"},
                {"id": "2", "question": "Which graph is a tree? Choices: (A) 1 (B) 2",
                 "image": "image/image2.png", "decoded_image": img(), "ground_truth": choice,
                 "answer_type": "multiple choice", "subject": "GT", "knowledge_level": "undergraduate"}]
        write_parquet(root / "data" / f"sample{k}-00000-of-00001.parquet", rows, schema)
    (root / "10VariationSamples.zip").write_bytes(b"PK")  # shipped beside, not read


def mmk12(root: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("subject", pa.string()), ("image", IMAGE),
                        ("question", pa.string()), ("answer", pa.string())])
    rows = [{"id": "math_12", "subject": "math", "image": img(),
             "question": "<image>As shown, find the angle ABC.\nA. 30°\nB. 45°\nC. 60°\nD. 90°",
             "answer": "C"},
            {"id": "physics_7", "subject": "physics", "image": img(),
             "question": "Which circuit has the larger current?\nA. circuit 1\nB. circuit 2\n"
                         "C. equal\nD. cannot tell", "answer": "A"}]
    write_parquet(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    write_parquet(root / "data" / "train-00000-of-00004.parquet", rows[:1], schema)


BUILDERS = {"mathvision": mathvision, "mathvision_testmini": mathvision, "mmmu": mmmu,
            "mmmu_pro": mmmu_pro, "chartqa": chartqa,
            "cv_bench": cv_bench, "clevr_count": clevr_count, "mmvp": mmvp, "blink": blink,
            "dynamath": dynamath, "mmk12": mmk12}

GOLD = {
    "mathvision": [("1", "mathvision", "metric geometry - area", "C"),
                   ("2", "mathvision", "algebra", "\\frac{3}{2}"),
                   ("3", "mathvision", "analytic geometry", "(2,3)")],
    "mathvision_testmini": [("1", "mathvision", "metric geometry - area", "C")],
    "mmmu": [("validation_Accounting_1", "mmmu", "Accounting", "B"),
             ("validation_Accounting_2", "mmmu", "Accounting", ["0.5", "1/2"]),
             ("validation_Music_3", "mmmu", "Music", "D"),
             ("validation_Music_4", "mmmu", "Music", "3")],
    "mmmu_pro": [("standard (10 options)/test_Physics_1", "mmmu_pro", "standard (10 options)", "J"),
                 ("standard (10 options)/test_Art_2", "mmmu_pro", "standard (10 options)", "B"),
                 ("vision/test_Physics_1", "mmmu_pro", "vision", "J")],
    "chartqa": [("0", "relaxed", "human_test", "41.5"), ("1", "relaxed", "human_test", "Japan"),
                ("2", "relaxed", "augmented_test", "12%"), ("3", "relaxed", "augmented_test", "0")],
    "cv_bench": [("2D_0", "choice", "Count", "C"), ("2D_1", "choice", "Relation", "A"),
                 ("2D_2", "choice", "Count", "B"), ("3D_3", "choice", "Depth", "B"),
                 ("3D_4", "choice", "Distance", "A")],
    "clevr_count": [("0", "math", "counting", "3"), ("1", "math", "counting", "10")],
    "mmvp": [("1", "choice", "mmvp", "A"), ("2", "choice", "mmvp", "B"),
             ("3", "choice", "mmvp", "B"), ("4", "choice", "mmvp", "A")],
    "blink": [("val_Jigsaw_1", "choice", "Jigsaw", "B"),
              ("val_Relative_Depth_1", "choice", "Relative_Depth", "A"),
              ("val_Relative_Depth_2", "choice", "Relative_Depth", "B")],
    "dynamath": [("1/1", "dynamath", "AG", "0.5"), ("1/2", "dynamath", "GT", "B"),
                 ("2/1", "dynamath", "AG", "-2.0"), ("2/2", "dynamath", "GT", "A")],
    "mmk12": [("math_12", "choice", "math", "C"), ("physics_7", "choice", "physics", "A")],
}


def build_all(root: Path) -> Path:
    """Every breadth benchmark under ``root/<name>/``; returns ``root``."""
    for name, build in BUILDERS.items():
        build(root / name)
    return root
