"""Image decoding shared by the data tools and the training decode: one rule everywhere.

* **Orientation.** EXIF orientation is applied (``PIL.ImageOps.exif_transpose``) on every
  decode (:func:`open_upright`). ``convert`` goes further and stores upright pixels with no
  orientation tag (:func:`normalise_orientation`), so the stored ``width``/``height``, the
  boxes, the evidence masks and the pixels the processor sees share one frame, whatever
  decoder later reads the bytes.
* **Colour.** :func:`to_rgb8` is the one conversion of a PIL mode to 8-bit RGB: 16-bit,
  32-bit integer and float images are *scaled* into 0..255 (never clipped), transparent
  images are composited on a white background, CMYK / palette / bilevel / grey are
  converted by PIL.
* **Size.** :func:`check_pixels` refuses images with more than ``max_pixels`` pixels from
  the header alone, before any pixel is decoded (bounded memory).

Errors are :class:`ImageError` with the reason only; callers add the record and field.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 1 << 26  # 67,108,864 pixels (e.g. 8192 x 8192): ~200 MB as RGB8
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
ORIENTATION_TAG = 0x0112
EXIF_MODES = ("apply", "ignore")

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class ImageError(ValueError):
    """An image cannot be used (undecodable, too large); the message is the reason only."""


class ImageTooLarge(ImageError):
    """An image has more pixels than the configured limit."""


class BadRecord(ValueError):
    """A dataset record that cannot be used at training or evaluation time (e.g. a truncated
    image that passed ``convert --check-images header``); the message names the record and
    the field. The CLI prints it as one ``error:`` line (a user error, not a bug).
    """


def orientation(im: Image.Image) -> int:
    """The EXIF orientation tag of ``im`` (1 = upright, also when there is none)."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 -- a broken EXIF block means no usable orientation
        return 1
    return int(value) if value in range(1, 9) else 1


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    """Raise :class:`ImageError` when ``width * height`` exceeds ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (raise it with --max-image-pixels / max_image_pixels)"
        )


def open_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open encoded image bytes lazily (header only) after checking the pixel limit.

    PIL's own decompression-bomb guard is replaced by ``max_pixels``: the size is read
    from the header and compared before any pixel is decoded.

    Raises:
        ImageError: not an image, or larger than ``max_pixels``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image above PIL's decompression-bomb limit: {e}") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except Exception as e:  # noqa: BLE001 -- PIL raises many types for bad files
        raise ImageError(f"{type(e).__name__}: {e}") from None
    check_pixels(im.width, im.height, max_pixels)
    return im


def to_rgb8(im: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, preserving the pixel statistics.

    * ``RGB``: returned as is.
    * ``I;16*``: scaled by the dtype's range, ``v * 255 / 65535`` (so a 16-bit gradient keeps
      its order and its relative mean; PIL's own ``convert`` would saturate it at 255).
    * ``I`` (32-bit int): values inside ``0..65535`` are 16-bit data (as PIL opens 16-bit
      TIFF/PGM) and scaled like ``I;16``; any other range is min-max scaled.
    * ``F`` (float): values inside ``[0, 1]`` are scaled by 255; any other range is min-max
      scaled; non-finite values become 0.
    * ``LA``, ``PA``, ``RGBA``, ``RGBa`` and ``P``/``L``/``RGB`` with a ``transparency`` entry:
      alpha-composited on ``background`` (white by default).
    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: PIL's ``convert("RGB")``.
    """
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I") or mode == "F":
        grey = _scale_to_uint8(np.asarray(im), mode)  # [H, W] uint8
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert("RGB")


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """``[H, W]`` integer or float samples -> ``[H, W]`` uint8, scaled (see :func:`to_rgb8`)."""
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    a = np.where(finite, a, 0.0)
    lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        scaled = a * (255.0 / 65535.0)
    elif mode == "F" and lo >= 0 and hi <= 1:
        scaled = a * 255.0
    elif hi > lo:
        scaled = (a - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def open_upright(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` to upright 8-bit RGB: limit check, EXIF orientation, :func:`to_rgb8`."""
    im = open_image(data, max_pixels)
    try:
        im.load()
        if orientation(im) != 1:
            im = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 -- truncated or corrupt data
        raise ImageError(f"cannot decode image: {type(e).__name__}: {e}") from None
    return to_rgb8(im)


def decode_value(value, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A dataset image value (``{"bytes", "path"}`` or a PIL image) -> upright RGB8 image."""
    if isinstance(value, Image.Image):
        if orientation(value) != 1:
            value = ImageOps.exif_transpose(value)
        check_pixels(value.width, value.height, max_pixels)
        return to_rgb8(value)
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None and value.get("path"):
            with open(value["path"], "rb") as fh:
                data = fh.read()
        if data is None:
            raise ImageError("image has neither bytes nor path")
        return open_upright(data, max_pixels)
    raise ImageError(f"expected an image, got {type(value).__name__}")


def normalise_orientation(data: bytes, exif: str = "apply") -> tuple[bytes, int, int, int]:
    """Bytes with no EXIF orientation left, and their size (the ``convert`` rule).

    An image whose orientation tag is 1 (or absent) is returned unchanged. Otherwise its
    pixels are decoded and re-encoded as lossless 8-bit RGB PNG (without EXIF): turned
    upright (``exif="apply"``: annotations refer to the displayed image) or as stored
    (``exif="ignore"``: annotations refer to the raw pixel array). Either way no later
    decoder can rotate it again.

    Returns:
        ``(bytes, width, height, orientation)`` with the size of the returned bytes.
    """
    if exif not in EXIF_MODES:
        raise ValueError(f"exif must be one of {EXIF_MODES}, got {exif!r}")
    with open_image(data, None) as im:
        tag = orientation(im)
        if tag == 1:
            return data, int(im.width), int(im.height), 1
        im.load()
        out = ImageOps.exif_transpose(im) if exif == "apply" else im
        rgb = to_rgb8(out)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue(), int(rgb.width), int(rgb.height), tag
