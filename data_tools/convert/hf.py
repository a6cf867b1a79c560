r"""``visgrpo-data convert hf``: a local Hugging Face dataset to the evidence schema.

Input: a ``save_to_disk`` folder (``--split`` picks from a DatasetDict), a folder of parquet
/ JSON shards (files named after ``--split`` are kept when several splits sit together), or
one parquet / JSON / JSONL file. Nothing is downloaded.

Columns are mapped with ``--columns question=problem,answer=answer,image=images`` (keys:
``id``, ``question``, ``answer``, ``image``, ``answer_type``, ``boxes``, ``box_labels``,
``box_image``), on top of a ``--preset``:

* ``virl39k``: ViRL39K (``TIGER-Lab/ViRL39K``: ``qid``, ``question`` with ``<image>``
  markers, ``answer`` (often ``\boxed{...}``), ``image``: a list of paths relative to the
  unpacked ``images.zip``);
* ``geometry3k``: ``hiyouga/geometry3k`` style (``images``, ``problem``, ``answer``);
* ``trl``: TRL's vision GRPO style (``prompt``: text or chat messages, ``image``,
  ``solution``, possibly in ``<answer>`` tags).

Images may be decoded images, ``{"bytes", "path"}`` structs or paths (relative to
``--image-root``, default the input's folder), one per row or a list: rows with several
images make a multi-image dataset (``images``, list-valued ``width``/``height``,
``box_image``: visgrpo/data/schema.py). ``<image>`` markers are removed from the question (the
chat template places the images); their count must equal the row's images.

Boxes are optional. Rows without boxes train with every method that does not read
evidence (GRPO-family objectives, VGPO, AT-RL); EASE (attention target) and SAYO (evidence
region) need boxes, and the converter prints one line naming the first such record.
The answer type is ``--answer-type`` or inferred per row: one option letter -> ``choice``,
a formula / number -> ``number`` (math-verify), anything else -> ``text``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import datasets

from data_tools.boxes import add_box_arguments, convert_and_validate, parse_box_format
from data_tools.convert import common
from data_tools.errors import ErrorReport, RecordError
from visgrpo.data.schema import ANSWER_TYPES, BASE_FEATURES

KEYS = ("id", "question", "answer", "image", "answer_type", "boxes", "box_labels", "box_image")
PRESETS = {
    "virl39k": {"id": "qid", "question": "question", "answer": "answer", "image": "image"},
    "geometry3k": {"question": "problem", "answer": "answer", "image": "images"},
    "trl": {"question": "prompt", "answer": "solution", "image": "image"},
}
_BOXED = re.compile(r"^\s*\\boxed\{(.*)\}\s*$", re.S)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, help="save_to_disk folder, parquet/JSON folder or file")
    parser.add_argument("--split", default="train", help="split to read (default train)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--columns", default="", metavar="KEY=COL,...",
                        help=f"column mapping (keys: {', '.join(KEYS)}); overrides the preset")
    parser.add_argument("--image-root", default=None, help="folder for relative image paths")
    parser.add_argument("--answer-type", choices=("auto", *ANSWER_TYPES), default="auto")
    add_box_arguments(parser)
    common.add_output_arguments(parser, source_default="hf")


def column_map(preset: str | None, spec: str) -> dict[str, str]:
    """The preset's mapping updated with ``KEY=COL`` pairs from ``--columns``."""
    mapping = dict(PRESETS[preset]) if preset else {"question": "question", "answer": "answer",
                                                   "image": "image"}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, col = part.partition("=")
        if not sep or not col or key not in KEYS:
            raise ValueError(f"--columns {part!r}: expected KEY=COLUMN with KEY one of {', '.join(KEYS)}")
        mapping[key] = col
    for key in ("question", "answer", "image"):
        if key not in mapping:
            raise ValueError(f"--columns: no column for {key!r}")
    return mapping


def open_dataset(path: Path, split: str) -> datasets.Dataset:
    """The input as a memory-mapped ``datasets.Dataset`` (see the module docstring)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset")
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{path}: no split {split!r}; splits: {', '.join(ds)}")
            ds = ds[split]
        return ds
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix in (".parquet", ".json", ".jsonl") and p.is_file())
    parquet = [p for p in files if p.suffix == ".parquet"]
    files = parquet or files
    named = [p for p in files if p.name.startswith((f"{split}-", f"{split}.")) or p.parent.name == split]
    files = named or files
    if not files:
        raise FileNotFoundError(f"{path}: no parquet, JSON or save_to_disk dataset")
    if files[0].suffix == ".parquet":
        return datasets.Dataset.from_parquet([str(p) for p in files])
    return datasets.Dataset.from_json([str(p) for p in files])


def _undecoded(ds: datasets.Dataset, col: str) -> datasets.Dataset:
    """Image columns as ``{"bytes", "path"}`` (sizes come from headers, bytes are copied)."""
    feat = ds.features.get(col)
    if isinstance(feat, datasets.Image):
        return ds.cast_column(col, datasets.Image(decode=False))
    inner = getattr(feat, "feature", None)
    if isinstance(feat, (datasets.Sequence, datasets.List)) and isinstance(inner, datasets.Image):
        return ds.cast_column(col, datasets.List(datasets.Image(decode=False)))
    return ds


def image_cell(value, where: str, field: str, root: Path, args) -> tuple[bytes, int, int, str]:
    """``(bytes, width, height, name)`` of a path or ``{"bytes", "path"}`` cell: embedded
    bytes and files take the same checks (``--check-images``, ``--max-image-pixels``,
    ``--exif``); a path must stay under ``--image-root`` unless ``--allow-outside-root``.
    """
    check, max_pixels, exif = args.check_images, args.max_image_pixels, args.exif
    if isinstance(value, dict) and value.get("bytes"):
        data, w, h = common.image_bytes(value["bytes"], where, check, field, max_pixels, exif)
        return data, w, h, str(value.get("path") or "image.png")
    path = value.get("path") if isinstance(value, dict) else value
    if not isinstance(path, str) or not path:
        raise RecordError(where, field, f"expected an image path or bytes, got {type(value).__name__}")
    p = common.image_path(root, path, where, field, args.allow_outside_root)
    data, w, h = common.read_image(p, where, check, field, max_pixels, exif)
    return data, w, h, p.name


def question_text(value, where: str, field: str) -> str:
    """Plain text of a question (TRL chat messages: the user turns' text parts)."""
    if isinstance(value, list):
        parts = []
        for msg in value:
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(msg, dict) and msg.get("role", "user") != "user":
                continue
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
        value = "\n".join(p for p in parts if p)
    return common.text_value(value, where, field)


def answer_value(value, where: str, field: str) -> str:
    r"""The answer without ``<answer>`` tags and a whole-answer ``\boxed{}``."""
    text = common.text_value(value, where, field).strip()
    tagged = _ANSWER_TAG.findall(text)
    text = tagged[-1].strip() if tagged else text
    m = _BOXED.match(text)
    text = m.group(1).strip() if m else text
    if not text:
        raise RecordError(where, field, "empty")
    return text


def infer_answer_type(answer: str) -> str:
    if _LETTER.match(answer):
        return "choice"
    return "text" if _WORD.search(answer) else "number"


def _images(row: dict, col: str, where: str) -> list:
    value = row.get(col)
    if value is None:
        raise RecordError(where, col, "missing")
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise RecordError(where, col, "no image")
    return values


def convert_record(row: dict, index: int, cols: dict, args, root: Path, multi: bool) -> dict:
    """One row to a schema record (raises :class:`RecordError` naming the row and column)."""
    rec_id = common.text_value(row.get(cols["id"]), f"row {index}", cols["id"]) if "id" in cols else str(index)
    where = f"row {index} (id={rec_id})"
    for key in ("question", "answer"):
        if row.get(cols[key]) is None:
            raise RecordError(where, cols[key], "missing")
    images = [image_cell(v, where, f"{cols['image']}[{i}]", root, args)
              for i, v in enumerate(_images(row, cols["image"], where))]
    if len(images) > 1 and not multi:
        raise RecordError(where, cols["image"], "several images in a single-image dataset")
    question = question_text(row[cols["question"]], where, cols["question"])
    markers = question.count("<image>")
    if markers and markers != len(images):
        raise RecordError(where, cols["question"], f"{markers} <image> markers for {len(images)} images")
    question = question.replace("<image>", "").strip()
    answer = answer_value(row[cols["answer"]], where, cols["answer"])
    if "answer_type" in cols:
        atype = common.answer_type_value(row.get(cols["answer_type"]), where, cols["answer_type"])
    else:
        atype = infer_answer_type(answer) if args.answer_type == "auto" else args.answer_type
    boxes, box_image = [], []
    raw = row.get(cols["boxes"]) if "boxes" in cols else None
    if raw is not None and len(raw):
        which = row.get(cols["box_image"]) if "box_image" in cols else None
        which = list(which) if which is not None else [0] * len(raw)
        if len(which) != len(raw):
            raise RecordError(where, cols.get("box_image", "box_image"), f"{len(which)} entries for {len(raw)} boxes")
        for k, (box, img) in enumerate(zip(raw, which, strict=True)):
            if not 0 <= int(img) < len(images):
                raise RecordError(where, f"{cols['box_image']}[{k}]", f"no image {img}")
            _, w, h, _ = images[int(img)]
            boxes.append(convert_and_validate([box], args.parsed_box_format, w, h, where,
                                              args.clip_boxes, args.box_tolerance,
                                              f"{cols['boxes']}[{k}]")[0].tolist())
            box_image.append(int(img))
    labels = row.get(cols["box_labels"]) if "box_labels" in cols else None
    record = dict(id=rec_id, question=question, answer=answer, answer_type=atype, boxes=boxes,
                  box_labels=common.labels_value(labels, len(boxes), where), source=args.source)
    cells = [{"bytes": data, "path": name} for data, _, _, name in images]
    if multi:
        record.update(images=cells, width=[w for _, w, _, _ in images],
                      height=[h for _, _, h, _ in images], box_image=box_image)
    else:
        record.update(image=cells[0], width=images[0][1], height=images[0][2])
    return common.make_record(**record)


def max_list_length(ds: datasets.Dataset, col: str) -> int:
    """Most images in one row of ``col`` (1 when it is not a list column); no image is read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = ds.with_format("arrow").data.column(col)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        return 1
    longest = pc.max(pc.list_value_length(arr)).as_py()
    return int(longest or 0)


class _Writer(common.ShardedWriter):
    """The shared shard writer with the multi-image columns when needed."""

    def __init__(self, out, multi: bool) -> None:
        super().__init__(out, with_segmentation=False)
        if multi:
            feats = {k: v for k, v in BASE_FEATURES.items() if k != "image"}
            feats.update(images=datasets.List(datasets.Image()),
                         width=datasets.List(datasets.Value("int32")),
                         height=datasets.List(datasets.Value("int32")),
                         box_image=datasets.List(datasets.Value("int32")))
            self.features = datasets.Features(feats)


def run(args) -> int:
    common.check_out(args)
    args.parsed_box_format = parse_box_format(args.box_format, args.box_scale, "arguments", "--box-format")
    cols = column_map(args.preset, args.columns)
    path = Path(args.input)
    ds = open_dataset(path, args.split)
    missing = [c for c in cols.values() if c not in ds.column_names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; columns: {', '.join(ds.column_names)}")
    ds = _undecoded(ds, cols["image"])
    multi = max_list_length(ds, cols["image"]) > 1
    root = Path(args.image_root) if args.image_root else (path if path.is_dir() else path.parent)
    report, seen, no_boxes = ErrorReport(), set(), []
    with _Writer(args.out, multi) as writer:
        for i, row in enumerate(common.progress(ds, args, total=len(ds), desc="convert hf")):
            report.processed += 1
            try:
                record = convert_record(row, i, cols, args, root, multi)
                if record["id"] in seen:
                    raise RecordError(f"row {i}", cols.get("id", "id"), f"duplicate id {record['id']!r}")
            except RecordError as err:
                common.skip_or_raise(err, args.on_error, report)
                continue
            seen.add(record["id"])
            if not record["boxes"]:
                no_boxes.append(record["id"])
            writer.add(record)
        if no_boxes:
            print(f"convert hf: {len(no_boxes)} of {writer.count} records have no evidence boxes "
                  f"(first: record {no_boxes[0]!r}): fine for GRPO/DAPO-family training, VGPO and "
                  "AT-RL; EASE and SAYO need boxes for them", file=sys.stderr)
        meta = {"convert": {"command": "hf", "input": str(path), "split": args.split,
                            "preset": args.preset, "columns": cols, "multi_image": multi,
                            "records_without_boxes": len(no_boxes),
                            "box_format": args.parsed_box_format.name}}
        return common.finish(writer, args, report, meta)
