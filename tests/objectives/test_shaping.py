"""DAPO overlong penalty: hand values and a piecewise loop reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visgrpo.objectives import overlong_penalty


def test_hand_values():
    # L_max = 10, L_c = 4 -> the linear part starts at 10 - 4 = 6
    # |y| = 0, 6 -> 0;  7 -> (6-7)/4 = -0.25;  9 -> (6-9)/4 = -0.75;  10 -> (6-10)/4 = -1
    # |y| = 11 > L_max -> -1
    out = overlong_penalty(torch.tensor([0, 6, 7, 9, 10, 11]), max_len=10, cache_len=4)
    assert out.tolist() == [0.0, 0.0, -0.25, -0.75, -1.0, -1.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(torch.tensor([1]), max_len=10, cache_len=0)
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(torch.tensor([1]), max_len=10, cache_len=11)
    with pytest.raises(ValueError, match="max_len"):
        overlong_penalty(torch.tensor([1]), max_len=0, cache_len=1)
    with pytest.raises(ValueError, match="negative"):
        overlong_penalty(torch.tensor([-1]), max_len=10, cache_len=2)


@settings(max_examples=50, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 80), min_size=1, max_size=20),
    max_len=st.integers(1, 64),
    frac=st.floats(0.01, 1.0),
)
def test_matches_piecewise_loop(lengths, max_len, frac):
    cache = max(1, min(max_len, round(frac * max_len)))
    out = overlong_penalty(torch.tensor(lengths), max_len, cache).tolist()
    for n, v in zip(lengths, out, strict=True):
        if n <= max_len - cache:
            ref = 0.0
        elif n <= max_len:
            ref = ((max_len - cache) - n) / cache
        else:
            ref = -1.0
        assert math.isclose(v, ref, rel_tol=1e-6, abs_tol=1e-7)
        assert -1.0 <= v <= 0.0
