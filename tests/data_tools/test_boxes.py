"""data_tools.boxes: every format by hand, and every bad-box case naming record and field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_tools.boxes import (
    BOX_FORMATS,
    BoxFormat,
    BoxFormatError,
    convert_and_validate,
    count_clipped,
    format_box_text,
    parse_box_format,
    to_xyxy_pixels,
    validate_boxes,
)
from data_tools.errors import RecordError

W, H = 200, 100  # image width, height

# (format, input box, expected xyxy pixels), all worked out by hand for a 200 x 100 image.
CASES = [
    ("xyxy", [10, 20, 30, 40], [10, 20, 30, 40]),
    ("xywh", [10, 20, 30, 40], [10, 20, 10 + 30, 20 + 40]),  # x1 = x0 + w, y1 = y0 + h
    ("cxcywh", [50, 50, 20, 10], [50 - 10, 50 - 5, 50 + 10, 50 + 5]),  # c -+ size / 2
    ("xyxy-unit", [0.1, 0.2, 0.5, 0.6], [0.1 * 200, 0.2 * 100, 0.5 * 200, 0.6 * 100]),
    ("xywh-unit", [0.1, 0.2, 0.3, 0.4], [20, 20, (0.1 + 0.3) * 200, (0.2 + 0.4) * 100]),
    ("cxcywh-unit", [0.5, 0.5, 0.2, 0.4], [0.4 * 200, 0.3 * 100, 0.6 * 200, 0.7 * 100]),
    ("xyxy-thousand", [100, 200, 500, 600], [100 / 5, 200 / 10, 500 / 5, 600 / 10]),
    ("xywh-thousand", [100, 200, 300, 400], [20, 20, 400 / 5, 600 / 10]),
    ("cxcywh-thousand", [500, 500, 200, 400], [400 / 5, 300 / 10, 600 / 5, 700 / 10]),
    ("xyxy-pixel", [1.5, 2.5, 3.5, 4.5], [1.5, 2.5, 3.5, 4.5]),
]


@pytest.mark.parametrize(("fmt", "box", "expected"), CASES)
def test_every_format_by_hand(fmt, box, expected):
    got = to_xyxy_pixels([box], fmt, W, H, "rec")
    np.testing.assert_allclose(got, [expected], atol=1e-9)
    # the same through the validating path (float32 output)
    np.testing.assert_allclose(convert_and_validate([box], fmt, W, H, "rec"), [expected], atol=1e-4)


def test_vectorised_over_boxes_and_separate_scale_flag():
    boxes = [[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]
    got = to_xyxy_pixels(boxes, parse_box_format("cxcywh", "unit"), W, H, "rec")
    # second box: x 0.0..0.5 -> 0..100 px; y 0.5..1.0 -> 50..100 px
    np.testing.assert_allclose(got, [[80, 30, 120, 70], [0, 50, 100, 100]])


def test_parse_box_format_names():
    assert parse_box_format("xyxy") == BoxFormat("xyxy", "pixel")
    assert parse_box_format("CXCYWH_unit") == BoxFormat("cxcywh", "unit")
    assert parse_box_format("xywh:thousand").name == "xywh-thousand"
    assert parse_box_format("xywh", "thousand") == BoxFormat("xywh", "thousand")
    assert parse_box_format("xywh-thousand", "thousand").scale == "thousand"  # agreeing is fine
    assert len(BOX_FORMATS) == 3 * 3 + 3


@pytest.mark.parametrize(
    ("fmt", "scale", "needle"),
    [
        ("yolo", None, "unknown box format 'yolo'"),
        ("xyxy-percent", None, "unknown box scale 'percent'"),
        ("xyxy", "percent", "unknown box scale 'percent'"),
        ("xyxy-unit", "thousand", "says scale 'unit' but box scale is 'thousand'"),
        ("xyxy-unit-x", None, "unknown box format"),
        (7, None, "must be a string"),
    ],
)
def test_unknown_format_is_a_record_error(fmt, scale, needle):
    with pytest.raises(BoxFormatError) as e:
        parse_box_format(fmt, scale, where="data.jsonl:3")
    assert isinstance(e.value, RecordError)
    assert "data.jsonl:3" in str(e.value) and needle in str(e.value)


def test_unknown_format_in_conversion_names_record():
    with pytest.raises(RecordError, match=r"id=r1: field 'box_format': unknown box format 'xyz'"):
        to_xyxy_pixels([[0, 0, 1, 1]], "xyz", W, H, "id=r1")


@pytest.mark.parametrize(
    ("box", "field", "needle"),
    [
        ([1, 2, math.nan, 4], "boxes[1]", "non-finite"),
        ([1, 2, math.inf, 4], "boxes[1]", "non-finite"),
        ([30, 2, 10, 4], "boxes[1]", "inverted"),  # x1 < x0
        ([1, 40, 10, 4], "boxes[1]", "inverted"),  # y1 < y0
        ([5, 2, 5, 4], "boxes[1]", "zero-area"),  # x1 == x0
        ([5, 7, 9, 7], "boxes[1]", "zero-area"),  # y1 == y0
        ([150, 10, 202, 20], "boxes[1]", "out of bounds"),  # 2 px past the right edge > tol 1
        ([-5, 10, 20, 20], "boxes[1]", "out of bounds"),
        ([5, 10, 20, 101.5], "boxes[1]", "out of bounds"),  # 1.5 px below
    ],
)
def test_bad_boxes_name_record_and_index(box, field, needle):
    boxes = [[0, 0, 10, 10], box]  # the good box 0 is not reported
    with pytest.raises(RecordError) as e:
        validate_boxes(boxes, W, H, "id=q9")
    assert e.value.where == "id=q9" and e.value.field == field
    assert needle in e.value.reason
    assert "id=q9" in str(e.value) and "boxes[1]" in str(e.value)


def test_checks_run_by_kind_then_first_index_and_custom_field():
    # box 1 has zero area, box 2 is inverted: inverted is checked before zero area -> box 2
    with pytest.raises(RecordError) as e:
        validate_boxes([[0, 0, 1, 1], [0, 0, 0, 1], [5, 5, 1, 1]], W, H, "x.jsonl:2", field="bbox")
    assert e.value.field == "bbox[2]" and "inverted" in e.value.reason
    # two zero-area boxes 1 and 2: the first one is reported
    with pytest.raises(RecordError) as e2:
        validate_boxes([[0, 0, 1, 1], [0, 0, 0, 1], [5, 5, 5, 6]], W, H, "x.jsonl:2", field="bbox")
    assert e2.value.field == "bbox[1]" and "zero-area" in e2.value.reason


def test_tolerance_clips_silently_and_clip_policy():
    # 0.5 px overshoot (<= tol 1): clipped to the image edge without --clip-boxes
    out = validate_boxes([[-0.5, 0, 200.5, 100.4]], W, H, "r")
    np.testing.assert_allclose(out, [[0, 0, 200, 100]])
    # 10 px overshoot with clip=True: clipped to [0, W] x [0, H]
    out = validate_boxes([[-10, -3, 50, 40], [190, 90, 260, 130]], W, H, "r", clip=True)
    np.testing.assert_allclose(out, [[0, 0, 50, 40], [190, 90, 200, 100]])
    assert count_clipped([[-10, -3, 50, 40], [190, 90, 260, 130], [1, 1, 2, 2]], W, H) == 2
    # tolerance is a parameter: 2 px overshoot passes with tol=3
    np.testing.assert_allclose(
        validate_boxes([[0, 0, 202, 10]], W, H, "r", tol=3), [[0, 0, 200, 10]]
    )


def test_box_entirely_outside_fails_even_with_clip():
    with pytest.raises(RecordError, match=r"field 'boxes\[0\]': no area inside the 200x100 image"):
        validate_boxes([[210, 10, 250, 20]], W, H, "r", clip=True)


def test_shapes_and_types():
    assert validate_boxes([], W, H, "r").shape == (0, 4)
    assert validate_boxes(None, W, H, "r").shape == (0, 4)
    np.testing.assert_allclose(
        validate_boxes([1, 2, 3, 4], W, H, "r"), [[1, 2, 3, 4]]
    )  # one flat box
    assert validate_boxes(np.array([[1, 2, 3, 4]]), W, H, "r").dtype == np.float32
    with pytest.raises(RecordError, match=r"'boxes\[1\]': expected 4 numbers"):
        validate_boxes([[1, 2, 3, 4], [1, 2, 3]], W, H, "r")
    with pytest.raises(RecordError, match=r"'boxes\[0\]': non-numeric"):
        validate_boxes([[1, "2", 3, 4]], W, H, "r")
    with pytest.raises(RecordError, match=r"'boxes\[0\]': non-numeric"):
        validate_boxes([[1, True, 3, 4]], W, H, "r")
    with pytest.raises(RecordError, match="expected a list"):
        validate_boxes("0 0 1 1", W, H, "r")
    with pytest.raises(RecordError, match="expected shape"):
        validate_boxes(np.zeros((2, 5)), W, H, "r")
    with pytest.raises(RecordError, match="image size must be positive"):
        validate_boxes([[0, 0, 1, 1]], 0, H, "r")


def test_format_box_text():
    assert format_box_text([1.0, 2.25, 3.04, 4], ndigits=1) == "[1, 2.2, 3, 4]"  # round half even
    assert format_box_text([10.126, 0, 5.5, 7.999], ndigits=2) == "[10.13, 0, 5.50, 8]"
