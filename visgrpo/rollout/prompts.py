"""Chat-template prompts from evidence-dataset rows, and their expanded token length.

A row has either ``image`` (one image) or ``images`` (a list; see visgrpo/data/schema.py).
The user turn holds one image placeholder per image, in order, followed by the question
formatted into ``prompt_template``. The *expanded* length of a prompt counts every
``<|image_pad|>`` token the processor will insert (``grid_t * grid_h * grid_w / merge**2``
per image), computed from the image sizes alone: image tokens are never truncated, a
prompt that does not fit is dropped instead.
"""

from __future__ import annotations

from typing import Any

from visgrpo.data.geometry import Geometry
from visgrpo.data.images import DEFAULT_MAX_PIXELS, BadRecord, ImageError, decode_value

DEFAULT_PROMPT_TEMPLATE = (
    "{question}\nThink inside <think></think> and give the final answer inside <answer></answer>."
)
IMAGE_COLUMNS = ("image", "images")


def image_sizes(row: dict) -> list[tuple[int, int]]:
    """``[(height, width), ...]`` of a row's images, from its ``height``/``width`` columns."""
    h, w = row.get("height"), row.get("width")
    if h is None or w is None:
        raise ValueError(f"record {row.get('id')!r}: missing height/width columns")
    if isinstance(h, (list, tuple)):
        if not isinstance(w, (list, tuple)) or len(w) != len(h):
            raise ValueError(f"record {row.get('id')!r}: height/width lists differ in length")
        return [(int(a), int(b)) for a, b in zip(h, w, strict=True)]
    return [(int(h), int(w))]


def row_images(row: dict, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list:
    """The row's images as upright 8-bit RGB PIL images (``image`` or ``images`` column).

    Encoded values (``{"bytes", "path"}``, the datamodule reads image columns undecoded)
    are decoded by :func:`visgrpo.data.images.decode_value`: pixel limit checked from the
    header first, EXIF orientation applied, any mode converted by ``to_rgb8``. The decoded
    size must equal the row's ``width``/``height`` columns, which the evidence masks and
    the prompt-length filter were computed from.

    Raises:
        BadRecord: no image column, an image that cannot be used (undecodable, truncated,
            too large), or a size mismatch; the message names the record and the field.
    """
    if "images" in row and row["images"] is not None:
        imgs, fields = list(row["images"]), [f"images[{j}]" for j in range(len(row["images"]))]
    elif "image" in row and row["image"] is not None:
        imgs, fields = [row["image"]], ["image"]
    else:
        raise BadRecord(f"record {row.get('id')!r}: no 'image' or 'images' column")
    sizes = image_sizes(row) if row.get("height") is not None else [None] * len(imgs)
    out = []
    for im, f, hw in zip(imgs, fields, sizes, strict=False):
        try:
            im = decode_value(im, max_pixels)
        except (ImageError, OSError) as e:
            raise BadRecord(f"record {row.get('id')!r}: field {f!r}: {e}") from None
        if hw is not None and (im.height, im.width) != hw:
            raise BadRecord(
                f"record {row.get('id')!r}: field {f!r}: upright image is {im.width}x{im.height} "
                f"but the width/height columns say {hw[1]}x{hw[0]} (an EXIF-rotated image "
                "converted by an older visgrpo-data); re-run convert and masks"
            )
        out.append(im)
    return out


def format_question(template: str, row: dict) -> str:
    """Fill ``template`` (a ``str.format`` string using ``{question}`` and other columns)."""
    fields = {k: v for k, v in row.items() if isinstance(v, (str, int, float))}
    try:
        return template.format(**fields)
    except KeyError as err:
        raise KeyError(
            f"prompt_template uses {{{err.args[0]}}} but record {row.get('id')!r} has no such column"
        ) from None


def build_messages(
    row: dict, n_images: int, template: str, system_prompt: str | None
) -> list[dict[str, Any]]:
    """Chat messages for one row: optional system turn, then images + formatted question."""
    messages: list[dict[str, Any]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": format_question(template, row)})
    messages.append({"role": "user", "content": content})
    return messages


def prompt_text(processor, messages: list[dict]) -> str:
    r"""Chat-template text with the generation prompt (``<|im_start|>assistant\n``)."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def expanded_length(processor, text: str, sizes: list[tuple[int, int]], geom: Geometry) -> int:
    """Token count of ``text`` once each ``<|image_pad|>`` placeholder is expanded.

    Args:
        processor: the model's processor (its tokenizer counts the text tokens).
        text: chat-template text holding one placeholder per image.
        sizes: ``(height, width)`` of each image, in prompt order.
        geom: processor geometry.
    """
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_placeholders = sum(1 for i in ids if i == pad_id)
    if n_placeholders != len(sizes):
        raise ValueError(
            f"prompt holds {n_placeholders} image placeholders for {len(sizes)} images"
        )
    return len(ids) - n_placeholders + sum(geom.num_image_tokens(h, w) for h, w in sizes)
