r"""``visgrpo-data convert jsonl``: generic JSON-lines grounding/VQA data to the schema.

One JSON object per line. Field names are mapped with flags (dotted paths reach nested
objects, e.g. ``--boxes-field annotation.boxes``). Relative image paths are resolved
against ``--image-root`` (default: the JSONL file's directory). Boxes are converted from
``--box-format``/``--box-scale`` (see :mod:`data_tools.boxes`; a per-record format can be
given by ``--box-format-field``) to xyxy pixels of the original image and validated.
Segmentation (``--segmentation-field``): a list with one COCO segmentation object per box
in original pixels (or null per box); stored as :mod:`data_tools.segmentation` describes.

Errors name ``FILE:LINE`` (plus the record id when known) and the field, e.g.
``data.jsonl:7 (id=q7): field 'boxes[1]': inverted box ...``.

Example::

    visgrpo-data convert jsonl --input train.jsonl --image-root imgs --out ds \
        --question-field q --answer-field a --boxes-field bbox --box-format cxcywh-unit \
        --answer-type choice
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data_tools.boxes import (
    add_box_arguments,
    convert_and_validate,
    format_box_text,
    parse_box_format,
)
from data_tools.convert import common
from data_tools.errors import ErrorReport, RecordError
from data_tools.segmentation import segmentation_column

_MISSING = object()


def add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, nargs="+", help="JSONL file(s)")
    parser.add_argument(
        "--image-root",
        default=None,
        help="directory for relative image paths (default: the JSONL's directory)",
    )
    parser.add_argument("--image-field", default="image", help="image path field (default image)")
    parser.add_argument("--question-field", default="question")
    parser.add_argument("--answer-field", default="answer")
    parser.add_argument(
        "--boxes-field", default="boxes", help="evidence boxes field (default boxes)"
    )
    parser.add_argument(
        "--labels-field",
        default=None,
        help="box labels field, required in every record (default: box_labels when a record "
        "has it, checked like any labels; else empty labels)",
    )
    parser.add_argument("--id-field", default=None, help="record id field (default: FILESTEM-LINE)")
    parser.add_argument(
        "--segmentation-field", default=None, help="per-box COCO segmentation field (optional)"
    )
    parser.add_argument(
        "--box-format-field",
        default=None,
        help="per-record box format field (overrides --box-format)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--answer-type", default=None, help="answer type of every record (choice|number|text|box)"
    )
    group.add_argument("--answer-type-field", default=None, help="per-record answer type field")
    add_box_arguments(parser)
    common.add_output_arguments(parser, source_default="jsonl")


def get_field(obj: dict, path: str, where: str, required: bool = True):
    """``obj[path]`` with dotted paths; a missing required field is a :class:`RecordError`."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            if required:
                raise RecordError(where, path, "missing")
            return _MISSING
    return cur


def iter_lines(path: Path):
    """Yield ``(lineno, obj_or_error)`` for each non-blank line of a JSONL file."""
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield (
                    lineno,
                    RecordError(where, "<line>", f"malformed JSON: {e.msg} at column {e.colno}"),
                )
                continue
            if not isinstance(obj, dict):
                yield (
                    lineno,
                    RecordError(
                        where, "<line>", f"expected a JSON object, got {type(obj).__name__}"
                    ),
                )
                continue
            yield lineno, obj


def convert_record(obj: dict, where: str, rec_id: str, args, image_root: Path) -> dict:
    """One JSON object to a schema record (raises :class:`RecordError`)."""
    img_rel = common.text_value(get_field(obj, args.image_field, where), where, args.image_field)
    img_path = common.image_path(
        image_root, img_rel, where, args.image_field, args.allow_outside_root
    )
    data, width, height = common.read_image(
        img_path, where, args.check_images, args.image_field, args.max_image_pixels, args.exif
    )

    fmt = args.parsed_box_format
    if args.box_format_field:
        raw_fmt = get_field(obj, args.box_format_field, where, required=False)
        if raw_fmt is not _MISSING:
            fmt = parse_box_format(raw_fmt, args.box_scale, where, args.box_format_field)
    boxes = convert_and_validate(
        get_field(obj, args.boxes_field, where),
        fmt,
        width,
        height,
        where,
        clip=args.clip_boxes,
        tol=args.box_tolerance,
        field=args.boxes_field,
    )  # [K, 4]
    if args.answer_type_field:
        answer_type = common.answer_type_value(
            get_field(obj, args.answer_type_field, where), where, args.answer_type_field
        )
    else:
        answer_type = common.answer_type_value(args.answer_type or "text", where, "--answer-type")
    raw_answer = get_field(obj, args.answer_field, where)
    if answer_type == "box" and isinstance(raw_answer, (list, tuple)):
        box = convert_and_validate(
            raw_answer,
            fmt,
            width,
            height,
            where,
            args.clip_boxes,
            args.box_tolerance,
            args.answer_field,
        )
        if len(box) != 1:
            raise RecordError(
                where, args.answer_field, f"a box answer needs exactly one box, got {len(box)}"
            )
        answer = format_box_text(box[0], ndigits=2)
    else:
        answer = common.text_value(raw_answer, where, args.answer_field)
    labels = None
    if args.labels_field:
        labels = get_field(obj, args.labels_field, where)
    elif isinstance(obj, dict) and "box_labels" in obj:  # the schema's own name: never dropped
        labels = obj["box_labels"]
    segmentation = None
    if args.segmentation_field:  # a record without the field gets "" for each box
        seg = get_field(obj, args.segmentation_field, where, required=False)
        segmentation = segmentation_column(
            None if seg is _MISSING else seg,
            len(boxes),
            where,
            args.segmentation_field,
            hw=(height, width),
        )
    return common.make_record(
        id=rec_id,
        image={"bytes": data, "path": img_path.name},
        question=common.text_value(
            get_field(obj, args.question_field, where), where, args.question_field
        ),
        answer=answer,
        answer_type=answer_type,
        boxes=boxes,
        box_labels=common.labels_value(
            labels, len(boxes), where, args.labels_field or "box_labels"
        ),
        source=args.source,
        width=width,
        height=height,
        segmentation=segmentation,
    )


def id_prefixes(inputs: list[Path]) -> list[str]:
    """Default id prefix of each input: its stem, or, when two inputs share a stem (e.g.
    ``a/train.jsonl`` and ``b/train.jsonl``), its path without suffix below the inputs'
    common directory, with ``/`` as ``_`` (``a_train``).
    """
    stems = [p.stem for p in inputs]
    if len(set(stems)) == len(stems):
        return stems
    full = [Path(os.path.abspath(p)).with_suffix("") for p in inputs]
    base = Path(os.path.commonpath([str(f.parent) for f in full]))
    return [
        "_".join(f.relative_to(base).parts) if stems.count(p.stem) > 1 else p.stem
        for f, p in zip(full, inputs, strict=True)
    ]


def run(args) -> int:
    common.check_out(args)
    args.parsed_box_format = parse_box_format(
        args.box_format, args.box_scale, "arguments", "--box-format"
    )
    inputs = [Path(p) for p in args.input]
    for p in inputs:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such JSONL file")
    report = ErrorReport()
    seen: set[str] = set()
    prefixes = id_prefixes(inputs)
    with common.ShardedWriter(args.out, with_segmentation=bool(args.segmentation_field)) as writer:
        for path, prefix in zip(inputs, prefixes, strict=True):
            image_root = Path(args.image_root) if args.image_root else path.parent
            for lineno, obj in common.progress(iter_lines(path), args, desc=f"convert {path.name}"):
                report.processed += 1
                where = f"{path}:{lineno}"
                try:
                    if isinstance(obj, RecordError):
                        raise obj
                    if args.id_field:
                        rec_id = common.text_value(
                            get_field(obj, args.id_field, where), where, args.id_field
                        )
                        where = f"{where} (id={rec_id})"
                    else:
                        rec_id = f"{prefix}-{lineno}"
                    if rec_id in seen:
                        raise RecordError(where, args.id_field or "id", f"duplicate id {rec_id!r}")
                    record = convert_record(obj, where, rec_id, args, image_root)
                except RecordError as err:
                    common.skip_or_raise(err, args.on_error, report)
                    continue
                seen.add(rec_id)
                writer.add(record)
        meta = {
            "convert": {
                "command": "jsonl",
                "inputs": [str(p) for p in inputs],
                "box_format": args.parsed_box_format.name,
                "clip_boxes": args.clip_boxes,
            }
        }
        return common.finish(writer, args, report, meta)
