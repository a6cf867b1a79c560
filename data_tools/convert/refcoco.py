"""``visgrpo-data convert refcoco``: referring expressions; the answer is the box.

Inputs are the refer toolkit's refs plus the COCO instances file (``instances.json`` of
RefCOCO/RefCOCO+/RefCOCOg). The refs are read from a JSON list (``.json``) or JSON lines
(``.jsonl``) export, one object per ref::

    {"ref_id": 0, "image_id": 581857, "ann_id": 1719310, "split": "train",
     "sentences": [{"sent": "the lady with the blue shirt"}, ...]}

The toolkit's own ``refs(unc).p`` is a pickle; it is read only with ``--allow-pickle``, and
then with a restricted unpickler that refuses every global (plain dicts/lists/strings/numbers
only), so no code can run. To export once: ``json.dump(pickle.load(open(p, "rb")), ...)``
in a trusted environment.

Each record: ``question`` = ``--template`` with ``{expression}`` replaced by the sentence,
``answer`` = the box as text ``"[x0, y0, x1, y1]"`` in original-image pixels (2 decimals at
most), ``answer_type`` = ``box``, ``boxes`` = ``[that box]`` (the evidence),
``box_labels`` = ``[category name]``, ``segmentation`` = the annotation's. ``--per
sentence`` (default) writes one record per sentence (id ``refcoco-<ref_id>-<k>``), ``--per
ref`` one per ref using its first sentence (id ``refcoco-<ref_id>``). ``--split`` keeps
only refs of that split.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from data_tools.boxes import add_clip_arguments, convert_and_validate, format_box_text
from data_tools.convert import common
from data_tools.convert.coco import ImageCache, image_of, load_coco
from data_tools.errors import ErrorReport, RecordError
from data_tools.segmentation import segmentation_column

DEFAULT_TEMPLATE = (
    "Locate the {expression} in the image. Answer with its bounding box [x0, y0, x1, y1]."
)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--refs",
        required=True,
        help="refs export (.json list or .jsonl); .p only with --allow-pickle",
    )
    parser.add_argument(
        "--instances", required=True, help="COCO instances JSON of the refer dataset"
    )
    parser.add_argument(
        "--image-root", required=True, help="directory holding the images' file_name"
    )
    parser.add_argument(
        "--split", default=None, help="keep only refs of this split (e.g. train, val, testA)"
    )
    parser.add_argument(
        "--per",
        choices=("sentence", "ref"),
        default="sentence",
        help="one record per sentence (default) or per ref (first sentence)",
    )
    parser.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        help=f"question template with {{expression}} (default: {DEFAULT_TEMPLATE!r})",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read a refer-toolkit .p file (restricted unpickler: plain containers only)",
    )
    parser.add_argument(
        "--no-segmentation", action="store_true", help="do not keep the segmentation"
    )
    add_clip_arguments(parser)
    common.add_output_arguments(parser, source_default="refcoco")


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only plain data is allowed"
        )


def load_refs(path: str | Path, allow_pickle: bool = False):
    """Yield ``(where, ref_or_RecordError)`` from a refs export."""
    from data_tools.convert.coco import iter_questions

    path = Path(path)
    if path.suffix in (".p", ".pkl", ".pickle"):
        if not allow_pickle:
            raise ValueError(
                f"{path}: pickle files can run code when loaded; export the refs to JSON "
                "or pass --allow-pickle (plain-data restricted unpickler)"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such refs file")
        try:
            refs = _PlainUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        except Exception as e:  # noqa: BLE001 -- any unpickling failure is a bad file
            raise ValueError(
                f"{path}: cannot read the refs pickle: {type(e).__name__}: {e}"
            ) from None
        if not isinstance(refs, list):
            raise ValueError(f"{path}: expected a list of refs")
        for i, ref in enumerate(refs):
            where = f"{path}[{i}]"
            yield (
                where,
                ref if isinstance(ref, dict) else RecordError(where, "<item>", "expected a dict"),
            )
        return
    yield from iter_questions(path)


def sentences_of(ref: dict, where: str) -> list[str]:
    sents = ref.get("sentences")
    if not isinstance(sents, list) or not sents:
        raise RecordError(where, "sentences", "expected a non-empty list of {'sent': ...}")
    out = []
    for k, s in enumerate(sents):
        text = s.get("sent", s.get("raw")) if isinstance(s, dict) else s
        out.append(common.text_value(text, where, f"sentences[{k}].sent"))
    return out


def convert_ref(coco, ref: dict, where: str, args, images: ImageCache) -> list[dict]:
    ann = coco.anns.get(ref.get("ann_id"))
    if ann is None:
        raise RecordError(
            where, "ann_id", f"annotation id not in the instances file: {ref.get('ann_id')!r}"
        )
    image_id = ref.get("image_id", ann["image_id"])
    if ann["image_id"] != image_id:
        raise RecordError(
            where,
            "ann_id",
            f"annotation of another image: {ann['id']} belongs to image {ann['image_id']}, not {image_id}",
        )
    img = coco.imgs.get(image_id)
    if img is None:
        raise RecordError(where, "image_id", f"image id not in the instances file: {image_id!r}")
    width, height = int(img["width"]), int(img["height"])
    data = image_of(img, width, height, where, args, images)
    box = convert_and_validate(
        [ann.get("bbox")],
        "xywh-pixel",
        width,
        height,
        where,
        clip=args.clip_boxes,
        tol=args.box_tolerance,
    )  # [1, 4]
    label = coco.cats.get(ann.get("category_id"), {}).get("name", "")
    seg = None if args.no_segmentation else segmentation_column([ann.get("segmentation")], 1, where, hw=(height, width))
    sents = sentences_of(ref, where)
    if args.per == "ref":
        sents = sents[:1]
    ref_id = ref.get("ref_id", ann["id"])
    out = []
    for k, sent in enumerate(sents):
        rec_id = f"refcoco-{ref_id}" if args.per == "ref" else f"refcoco-{ref_id}-{k}"
        out.append(
            common.make_record(
                id=rec_id,
                image={"bytes": data, "path": Path(img["file_name"]).name},
                question=args.template.replace("{expression}", sent),
                answer=format_box_text(box[0], ndigits=2),
                answer_type="box",
                boxes=box,
                box_labels=[label],
                source=args.source,
                width=width,
                height=height,
                segmentation=seg,
            )
        )
    return out


def run(args) -> int:
    common.check_out(args)
    if "{expression}" not in args.template:
        raise ValueError(f"--template must contain {{expression}}, got {args.template!r}")
    coco = load_coco(args.instances)
    images = ImageCache(Path(args.image_root), args)
    report = ErrorReport()
    seen: set[str] = set()
    kept_refs = 0
    with common.ShardedWriter(args.out, with_segmentation=not args.no_segmentation) as writer:
        for where, ref in common.progress(
            load_refs(args.refs, args.allow_pickle), args, desc="convert refcoco"
        ):
            if args.split is not None and isinstance(ref, dict) and ref.get("split") != args.split:
                continue
            report.processed += 1
            try:
                if isinstance(ref, RecordError):
                    raise ref
                where = f"{where} (ref_id={ref.get('ref_id')})"
                records = convert_ref(coco, ref, where, args, images)
                for r in records:
                    if r["id"] in seen:
                        raise RecordError(where, "ref_id", f"duplicate id {r['id']!r}")
            except RecordError as err:
                common.skip_or_raise(err, args.on_error, report)
                continue
            kept_refs += 1
            for r in records:
                seen.add(r["id"])
                writer.add(r)
        meta = {
            "convert": {
                "command": "refcoco",
                "refs": str(args.refs),
                "instances": str(args.instances),
                "split": args.split,
                "per": args.per,
                "template": args.template,
                "refs_kept": kept_refs,
            }
        }
        return common.finish(writer, args, report, meta)
