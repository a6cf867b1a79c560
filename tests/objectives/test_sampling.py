"""DAPO dynamic sampling: filter hand values, loop reference, multi-round accumulator."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visgrpo.objectives import DynamicSamplingAccumulator, dynamic_sampling_filter


def test_filter_hand_values():
    # group 3: (1, 1) all correct -> drop; group 8: (0, 1) -> keep
    # group -1: (0, 0) all wrong -> drop; group 4: singleton (0.5) -> drop
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5])
    groups = torch.tensor([3, 3, 8, 8, -1, -1, 4])
    keep, m = dynamic_sampling_filter(rewards, groups, correct_threshold=1.0)
    assert keep.tolist() == [False, False, True, True, False, False, False]
    assert m["groups_total"].item() == 4
    assert m["groups_kept"].item() == 1
    assert m["groups_dropped"].item() == 3
    assert m["groups_all_correct"].item() == 1  # group 3
    assert m["groups_all_wrong"].item() == 2  # group -1 and the singleton 0.5 < 1.0


def test_filter_atol():
    # spread 1e-4: kept with atol 1e-6, dropped with atol 1e-3
    rewards = torch.tensor([0.5, 0.5001])
    groups = torch.tensor([0, 0])
    assert dynamic_sampling_filter(rewards, groups, atol=1e-6)[0].all()
    assert not dynamic_sampling_filter(rewards, groups, atol=1e-3)[0].any()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.sampled_from([0.0, 0.5, 1.0])), max_size=20))
def test_filter_matches_loop(data):
    groups = [g for g, _ in data]
    rewards = [r for _, r in data]
    keep, m = dynamic_sampling_filter(torch.tensor(rewards), torch.tensor(groups, dtype=torch.long))
    vals: dict[int, set[float]] = {}
    for g, r in data:
        vals.setdefault(g, set()).add(r)
    assert keep.tolist() == [len(vals[g]) > 1 for g in groups]
    assert m["groups_dropped"].item() == sum(len(v) == 1 for v in vals.values())


def test_accumulator_collects_across_rounds():
    acc = DynamicSamplingAccumulator(target_groups=3, max_tries=5)
    # round 1: groups 0 (1,1 drop), 1 (0,1 keep) -> 1 kept
    stored = acc.add(
        torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1]), items=["a", "b", "c", "d"]
    )
    assert stored.tolist() == [False, False, True, True] and not acc.done
    # round 2: groups 7 (keep), 0 (keep), 5 (keep), 9 (drop) -> 2 needed, 5 is surplus
    r2 = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.2, 0.9, 0.0, 0.0])
    g2 = torch.tensor([7, 7, 0, 0, 5, 5, 9, 9])
    stored = acc.add(r2, g2, items=list("efghijkl"))
    assert stored.tolist() == [True, True, True, True, False, False, False, False]
    assert acc.done and acc.full
    assert acc.items() == ["c", "d", "e", "f", "g", "h"]
    assert acc.rewards().tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert acc.group_ids().tolist() == [0, 0, 1, 1, 2, 2]  # renumbered; id 0 reused is fine
    assert acc.metrics() == {
        "sampling_rounds": 2.0,
        "groups_seen": 6.0,  # 2 + 4
        "groups_dropped": 2.0,  # group 0 in round 1, group 9 in round 2
        "groups_kept": 3.0,
        "groups_surplus": 1.0,  # group 5
        "batch_full": 1.0,
    }
    with pytest.raises(RuntimeError, match="done"):
        acc.add(r2, g2)


def test_accumulator_gives_up_after_max_tries():
    acc = DynamicSamplingAccumulator(target_groups=2, max_tries=2)
    for _ in range(2):
        acc.add(torch.tensor([1.0, 1.0]), torch.tensor([0, 0]))
    assert acc.done and not acc.full
    assert acc.metrics()["sampling_rounds"] == 2.0 and acc.metrics()["groups_dropped"] == 2.0
    assert acc.rewards().numel() == 0 and acc.group_ids().numel() == 0
    with pytest.raises(ValueError, match="max_tries"):
        DynamicSamplingAccumulator(target_groups=2, max_tries=0)
    with pytest.raises(ValueError, match="items"):
        DynamicSamplingAccumulator(2, 2).add(torch.tensor([1.0]), torch.tensor([0]), items=[])
