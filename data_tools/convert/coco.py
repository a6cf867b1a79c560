"""``visgrpo-data convert coco``: a COCO instances file joined with a questions file.

The instances file is read with ``pycocotools.coco.COCO``. The questions file is JSON lines
(``.jsonl``) or one JSON list (``.json``), one object per question::

    {"id": "q1", "image_id": 139, "question": "What colour is the cup?",
     "answer": "red", "answer_type": "text", "ann_ids": [1234, 5678]}

``id`` is optional (default ``coco-<image_id>-<n>``, n = position in the file);
``answer_type`` is optional (default ``--answer-type``, text). ``ann_ids`` are the
evidence annotations, in the order of the written ``boxes``; each must exist and belong
to ``image_id``. Boxes are the annotations' COCO ``bbox`` (``xywh`` pixels) converted to
``xyxy`` pixels and validated (:mod:`data_tools.boxes`); labels are the category names;
the annotations' segmentations (polygons or RLE) are kept in the ``segmentation`` column
(one JSON text per box: :mod:`data_tools.segmentation`) unless ``--no-segmentation``.

Images (``file_name`` under ``--image-root``) are embedded; their header size must match
the instances file's ``width``/``height``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import OrderedDict
from pathlib import Path

from data_tools.boxes import add_clip_arguments, convert_and_validate
from data_tools.convert import common
from data_tools.errors import ErrorReport, RecordError
from data_tools.segmentation import segmentation_column


def add_arguments(parser) -> None:
    parser.add_argument(
        "--instances", required=True, help="COCO instances JSON (e.g. instances_val2017.json)"
    )
    parser.add_argument(
        "--questions", required=True, help="questions file (.jsonl, or .json with a list)"
    )
    parser.add_argument(
        "--image-root", required=True, help="directory holding the images' file_name"
    )
    parser.add_argument(
        "--answer-type", default="text", help="answer type for questions without one (default text)"
    )
    parser.add_argument(
        "--no-segmentation", action="store_true", help="do not keep annotation segmentations"
    )
    add_clip_arguments(parser)
    common.add_output_arguments(parser, source_default="coco")


def load_coco(path: str | Path):
    """``pycocotools.coco.COCO`` of an instances file, checked first so a bad file is one line.

    Raises:
        FileNotFoundError: no such file.
        RecordError: malformed JSON (``FILE:LINE``), not a JSON object, or an image,
            annotation or category without its ``id`` (or an annotation without
            ``image_id``), named by file, list index and id.
    """
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such instances file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(
            f"{path}:{e.lineno}", "<file>", f"malformed JSON: {e.msg} at column {e.colno}"
        ) from None
    except UnicodeDecodeError as e:
        raise RecordError(str(path), "<file>", f"not UTF-8 text: {e.reason}") from None
    if not isinstance(doc, dict):
        raise RecordError(
            str(path),
            "<file>",
            f"expected a COCO instances object with 'images' and 'annotations', "
            f"got a JSON {type(doc).__name__}",
        )
    required = {"images": ("id",), "annotations": ("id", "image_id"), "categories": ("id",)}
    for key, fields in required.items():
        items = doc.get(key, [])
        if not isinstance(items, list):
            raise RecordError(str(path), key, f"expected a list, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise RecordError(f"{path}: {key}[{i}]", "<item>", "expected a JSON object")
            for f in fields:
                if item.get(f) is None:
                    ident = f" (id={item['id']})" if item.get("id") is not None else ""
                    raise RecordError(f"{path}: {key}[{i}]{ident}", f, "missing")
    coco = COCO()
    coco.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def iter_questions(path: str | Path):
    """Yield ``(where, obj_or_RecordError)`` from a JSONL or JSON-list questions file."""
    from data_tools.convert.jsonl import iter_lines

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such questions file")
    if path.suffix == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(
                f"{path}:{e.lineno}", "<file>", f"malformed JSON: {e.msg} at column {e.colno}"
            ) from None
        if not isinstance(items, list):
            raise RecordError(str(path), "<file>", "expected a JSON list of question objects")
        for i, obj in enumerate(items):
            where = f"{path}[{i}]"
            yield (
                where,
                obj
                if isinstance(obj, dict)
                else RecordError(where, "<item>", "expected a JSON object"),
            )
    else:
        for lineno, obj in iter_lines(path):
            yield f"{path}:{lineno}", obj


class ImageCache:
    """A few recently read images (questions about one image are usually adjacent)."""

    def __init__(self, root: Path, args, size: int = 32) -> None:
        self.root, self.args, self.size = root, args, size
        self._cache: OrderedDict = OrderedDict()

    def get(self, file_name: str, where: str) -> tuple[bytes, int, int]:
        if file_name in self._cache:
            self._cache.move_to_end(file_name)
            return self._cache[file_name]
        a = self.args
        path = common.image_path(self.root, file_name, where, "file_name", a.allow_outside_root)
        value = common.read_image(path, where, a.check_images, "image", a.max_image_pixels, a.exif)
        self._cache[file_name] = value
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return value


def image_of(img: dict, width: int, height: int, where: str, args, images: ImageCache) -> bytes:
    """The stored bytes of ``img``, whose (oriented) size must match the instances file."""
    data, w, h = images.get(img["file_name"], where)
    if (w, h) != (width, height):
        hint = (
            "; the image has an EXIF rotation and the annotations seem to refer to the other "
            f"frame: pass --exif {'ignore' if args.exif == 'apply' else 'apply'}"
            if (h, w) == (width, height)
            else ""
        )
        raise RecordError(
            where,
            "image",
            f"size differs from the instances file: {img['file_name']} is {w}x{h}, "
            f"expected {width}x{height}{hint}",
        )
    return data


def annotation_boxes(coco, obj: dict, where: str, args) -> tuple[dict, list[dict]]:
    """The image entry and the evidence annotations of one question (validated ids)."""
    image_id = obj.get("image_id")
    if image_id not in coco.imgs:
        raise RecordError(where, "image_id", f"image id not in the instances file: {image_id!r}")
    ann_ids = obj.get("ann_ids")
    if not isinstance(ann_ids, list):
        raise RecordError(where, "ann_ids", f"expected a list of annotation ids, got {ann_ids!r}")
    anns = []
    for i, a in enumerate(ann_ids):
        ann = coco.anns.get(a)
        if ann is None:
            raise RecordError(
                where, f"ann_ids[{i}]", f"annotation id not in the instances file: {a!r}"
            )
        if ann["image_id"] != image_id:
            raise RecordError(
                where,
                f"ann_ids[{i}]",
                f"annotation of another image: {a} belongs to image {ann['image_id']}, not {image_id}",
            )
        anns.append(ann)
    return coco.imgs[image_id], anns


def convert_question(coco, obj: dict, where: str, rec_id: str, args, images: ImageCache) -> dict:
    img, anns = annotation_boxes(coco, obj, where, args)
    width, height = int(img["width"]), int(img["height"])
    data = image_of(img, width, height, where, args, images)
    for i, ann in enumerate(anns):
        if not isinstance(ann.get("bbox"), list):
            raise RecordError(where, f"boxes[{i}]", f"annotation {ann.get('id')} has no bbox")
    boxes = convert_and_validate(
        [ann["bbox"] for ann in anns],
        "xywh-pixel",
        width,
        height,
        where,
        clip=args.clip_boxes,
        tol=args.box_tolerance,
    )  # [K, 4]
    labels = [
        coco.cats[ann["category_id"]]["name"] if ann.get("category_id") in coco.cats else ""
        for ann in anns
    ]
    segmentation = None
    if not args.no_segmentation:
        segmentation = segmentation_column(
            [ann.get("segmentation") for ann in anns], len(anns), where, hw=(height, width)
        )
    return common.make_record(
        id=rec_id,
        image={"bytes": data, "path": Path(img["file_name"]).name},
        question=common.text_value(obj.get("question"), where, "question"),
        answer=common.text_value(obj.get("answer"), where, "answer"),
        answer_type=common.answer_type_value(obj.get("answer_type", args.answer_type), where),
        boxes=boxes,
        box_labels=labels,
        source=args.source,
        width=width,
        height=height,
        segmentation=segmentation,
    )


def run(args) -> int:
    common.check_out(args)
    common.answer_type_value(args.answer_type, "arguments", "--answer-type")
    coco = load_coco(args.instances)
    images = ImageCache(Path(args.image_root), args)
    report = ErrorReport()
    seen: set[str] = set()
    with common.ShardedWriter(args.out, with_segmentation=not args.no_segmentation) as writer:
        for n, (where, obj) in enumerate(
            common.progress(iter_questions(args.questions), args, desc="convert coco")
        ):
            report.processed += 1
            try:
                if isinstance(obj, RecordError):
                    raise obj
                rec_id = obj.get("id")
                rec_id = (
                    f"coco-{obj.get('image_id')}-{n}"
                    if rec_id is None
                    else common.text_value(rec_id, where, "id")
                )
                where = f"{where} (id={rec_id})"
                if rec_id in seen:
                    raise RecordError(where, "id", f"duplicate id {rec_id!r}")
                record = convert_question(coco, obj, where, rec_id, args, images)
            except RecordError as err:
                common.skip_or_raise(err, args.on_error, report)
                continue
            seen.add(rec_id)
            writer.add(record)
        meta = {
            "convert": {
                "command": "coco",
                "instances": str(args.instances),
                "questions": str(args.questions),
                "clip_boxes": args.clip_boxes,
            }
        }
        return common.finish(writer, args, report, meta)
