"""visgrpo.data.images: every PIL mode to RGB8 with its statistics kept; the pixel limit."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from visgrpo.data.images import (
    ImageTooLarge,
    decode_value,
    open_image,
    open_upright,
    to_rgb8,
)


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_16bit_gradient_is_scaled_not_saturated():
    a = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))  # [8, 256]
    data = _png_bytes(Image.fromarray(a))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    # what PIL's own convert does: 99.6% of the pixels at 255
    assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == 255).mean() > 0.99
    got = np.asarray(open_upright(data))[..., 0].astype(float)  # [8, 256]
    expected = a * 255.0 / 65535.0
    assert np.abs(got - expected).max() <= 0.5  # v * 255 / 65535, rounded
    assert abs(got.mean() - 127.5) < 0.5 and (got == 255).mean() < 0.01
    assert (np.diff(got[0]) >= 0).all()  # order kept


def test_int32_and_float_modes_are_scaled():
    i32 = np.array([[-1000, 0, 1000, 3000]], dtype=np.int32)  # outside 0..65535: min-max
    np.testing.assert_array_equal(
        np.asarray(to_rgb8(Image.fromarray(i32, "I")))[0, :, 0], [0, 64, 128, 255]
    )  # (v + 1000) * 255 / 4000, rounded
    i16 = np.array([[0, 32768, 65535]], dtype=np.int32)  # a 16-bit range in mode I
    np.testing.assert_array_equal(np.asarray(to_rgb8(Image.fromarray(i16, "I")))[0, :, 0], [0, 128, 255])
    unit = np.array([[0.0, 0.25, 1.0, np.nan]], dtype=np.float32)  # [0, 1] floats: x 255
    np.testing.assert_array_equal(np.asarray(to_rgb8(Image.fromarray(unit, "F")))[0, :, 0], [0, 64, 255, 0])
    depth = np.array([[2.0, 4.0, 6.0]], dtype=np.float32)  # any other range: min-max
    np.testing.assert_array_equal(np.asarray(to_rgb8(Image.fromarray(depth, "F")))[0, :, 0], [0, 128, 255])


def test_transparency_is_composited_on_white():
    la = Image.fromarray(np.array([[[100, 0], [100, 255], [100, 128]]], np.uint8), "LA")
    np.testing.assert_array_equal(np.asarray(to_rgb8(la))[0, :, 0], [255, 100, 177])  # 100a + 255(1-a), a = 128/255
    rgba = Image.new("RGBA", (1, 1), (10, 20, 30, 0))
    assert to_rgb8(rgba).getpixel((0, 0)) == (255, 255, 255)
    p = Image.new("P", (2, 1), 0)
    p.putpalette([0, 0, 0, 9, 200, 9] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    reread = Image.open(io.BytesIO(_png_bytes(p)))  # the tRNS chunk round-trips
    assert reread.mode == "P" and "transparency" in reread.info
    assert [to_rgb8(reread).getpixel((x, 0)) for x in (0, 1)] == [(255, 255, 255), (9, 200, 9)]


def test_cmyk_bilevel_grey_and_rgb():
    cmyk = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (255, 0, 0, 0))
    assert [to_rgb8(cmyk).getpixel((x, 0)) for x in (0, 1)] == [(255, 255, 255), (0, 255, 255)]
    bilevel = Image.new("1", (1, 1), 1)
    assert to_rgb8(bilevel).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb8(Image.new("L", (1, 1), 77)).getpixel((0, 0)) == (77, 77, 77)
    rgb = Image.new("RGB", (1, 1), (1, 2, 3))
    assert to_rgb8(rgb) is rgb


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims ``width x height`` (only the header is ever read)."""
    data = bytearray(_png_bytes(Image.new("RGB", (1, 1))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_pixel_limit_refuses_from_the_header():
    big = _png_claiming(10_000, 10_000)  # 10^8 pixels: 300 MB as RGB8 if decoded
    with pytest.raises(ImageTooLarge, match=r"10000x10000 = 100,000,000 pixels, above the limit"):
        open_image(big)
    assert open_image(big, max_pixels=None).size == (10_000, 10_000)  # header only, lazily
    huge = _png_claiming(100_000, 100_000)  # above PIL's own hard limit, also refused
    with pytest.raises(ImageTooLarge, match="decompression-bomb limit"):
        open_image(huge, max_pixels=None)
    with pytest.raises(ImageTooLarge, match="above the limit of 99"):
        decode_value({"bytes": _png_bytes(Image.new("RGB", (10, 10))), "path": None}, 99)
    assert decode_value({"bytes": _png_bytes(Image.new("RGB", (10, 10))), "path": None}, 100).size == (10, 10)
