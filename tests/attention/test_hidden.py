"""Hidden-state helpers on hand-built tensors."""

from __future__ import annotations

import math

import torch

from visgrpo.attention.hidden import gather_rows, masked_mean_rows, visual_focus


def test_gather_and_masked_mean():
    h = torch.arange(2 * 4 * 2, dtype=torch.float32).view(2, 4, 2)
    # h[0] = [[0,1],[2,3],[4,5],[6,7]], h[1] = [[8,9],[10,11],[12,13],[14,15]]
    rows = gather_rows(h, torch.tensor([[3, 0], [1, 1]]))
    assert rows.tolist() == [[[6, 7], [0, 1]], [[10, 11], [10, 11]]]
    mean = masked_mean_rows(
        h,
        torch.tensor([[1, 2, 0], [3, 0, 0]]),
        torch.tensor([[True, True, False], [True, False, False]]),
    )
    # sample 0: mean([2,3],[4,5]) = [3,4]; sample 1: [14,15]
    assert mean.tolist() == [[3, 4], [14, 15]]
    empty = masked_mean_rows(
        h, torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.bool)
    )
    assert empty.tolist() == [[0, 0], [0, 0]]


def test_visual_focus_cosines():
    hr = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]])  # [1, 3, 2]
    v = torch.tensor([[3.0, 0.0]])
    # cos((1,0),(3,0)) = 1; cos((1,1),(3,0)) = 3 / (sqrt(2) * 3) = 1/sqrt(2); cos((-2,0),.) = -1
    w = visual_focus(hr, v)
    torch.testing.assert_close(w, torch.tensor([[1.0, 1 / math.sqrt(2), -1.0]]))
