"""Micro-batches keep groups whole."""

from __future__ import annotations

import pytest
import torch

from visgrpo.lightning.batching import group_micro_batches


def test_micro_batches_partition_and_keep_groups_whole():
    # Groups (in appearance order): 7 x3, 2 x2, 5 x1, 9 x4 (one group interleaved).
    group_ids = torch.tensor([7, 7, 2, 7, 2, 5, 9, 9, 9, 9])
    batches = group_micro_batches(group_ids, micro_batch_size=4)
    # 7 (3) fits; adding 2 (2) would make 5 > 4 -> new batch [2 x2, 5 x1] = 3; 9 (4) -> own batch.
    assert [b.tolist() for b in batches] == [[0, 1, 3], [2, 4, 5], [6, 7, 8, 9]]
    flat = torch.cat(batches).sort().values
    assert torch.equal(flat, torch.arange(10))
    for b in batches:
        groups = set(group_ids[b].tolist())
        for g in groups:  # every member of the group is in this batch
            assert set((group_ids == g).nonzero().flatten().tolist()) <= set(b.tolist())


def test_oversized_group_is_its_own_batch_and_bad_size_fails():
    batches = group_micro_batches(torch.tensor([0, 0, 0, 0, 0, 1]), micro_batch_size=2)
    assert [len(b) for b in batches] == [5, 1]
    with pytest.raises(ValueError, match="positive"):
        group_micro_batches(torch.tensor([0]), 0)
