"""GRPO / Dr.GRPO advantages: hand values, equal/singleton groups, loop reference."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visgrpo.objectives import ADVANTAGES, compute_advantages

# Non-contiguous, unsorted, negative and large group ids.
REWARDS = torch.tensor([1.0, 0.5, 0.0, 0.5, 0.0, 0.5, 3.0, 2.0, 4.0])
GROUPS = torch.tensor([5, 9, 5, 9, 5, 9, -2, 10**12, 10**12])


def test_grpo_hand_values():
    # group 5: rewards (1, 0, 0); mean 1/3; dev (2/3, -1/3, -1/3)
    #   unbiased var = (4/9 + 1/9 + 1/9) / (3-1) = 1/3; std = 0.5773503
    #   A = (2/3)/0.5773503 = 1.1547005, (-1/3)/0.5773503 = -0.5773503
    # group 9: (0.5, 0.5, 0.5) all equal -> 0; group -2: singleton -> 0
    # group 1e12: (2, 4); mean 3; dev (-1, 1); unbiased var = (1+1)/1 = 2; std = 1.4142136
    #   A = -0.7071068, 0.7071068
    adv, m = compute_advantages("grpo", REWARDS, GROUPS)
    expected = [1.1547005, 0, -0.5773503, 0, -0.5773503, 0, 0, -0.7071068, 0.7071068]
    torch.testing.assert_close(adv, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert m["groups"].item() == 4
    # two of the four groups (9 and -2) have all-equal rewards
    assert m["frac_equal_reward_groups"].item() == pytest.approx(0.5)


def test_dr_grpo_hand_values():
    # R - group mean: group 5 -> (2/3, -1/3, -1/3); group 9 -> 0; singleton -> 0;
    # group 1e12 -> (-1, 1)
    adv, _ = compute_advantages("dr_grpo", REWARDS, GROUPS)
    expected = [2 / 3, 0, -1 / 3, 0, -1 / 3, 0, 0, -1.0, 1.0]
    torch.testing.assert_close(adv, torch.tensor(expected), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo"])
@pytest.mark.parametrize("value", [0.1, 1.0 / 3.0, 7.3, -2.2])
def test_equal_rewards_give_exact_zero(name, value):
    # 0.1 * 7 summed in float32 is not exactly 0.7, so "R - mean" alone could leave
    # round-off; the result must still be exactly 0 and never NaN.
    rewards = torch.full((7,), value, dtype=torch.float32)
    adv, _ = compute_advantages(name, rewards, torch.full((7,), 3))
    assert torch.equal(adv, torch.zeros(7))


def test_unknown_name_lists_valid():
    with pytest.raises(KeyError, match="dr_grpo, grpo"):
        compute_advantages("ppo", REWARDS, GROUPS)


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="group_ids"):
        compute_advantages("grpo", REWARDS, GROUPS[:3])
    with pytest.raises(ValueError, match="rewards"):
        compute_advantages("grpo", torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="integer"):
        compute_advantages("grpo", REWARDS, GROUPS.float())


def _loop_reference(rewards: list[float], groups: list[int], name: str, eps: float):
    by_group: dict[int, list[float]] = {}
    for r, g in zip(rewards, groups, strict=True):
        by_group.setdefault(g, []).append(r)
    out = []
    for r, g in zip(rewards, groups, strict=True):
        vals = by_group[g]
        if len(set(vals)) == 1:
            out.append(0.0)
            continue
        mean = sum(vals) / len(vals)
        if name == "grpo":
            out.append((r - mean) / (statistics.stdev(vals) + eps))  # stdev: n-1 divisor
        else:
            out.append(r - mean)
    return out


@settings(max_examples=50, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from([-7, 0, 3, 11, 2**40]),
            st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(-5, 5, width=32)),
        ),
        min_size=1,
        max_size=24,
    ),
    name=st.sampled_from(["grpo", "dr_grpo"]),
)
def test_vectorised_matches_loop(data, name):
    groups = [g for g, _ in data]
    rewards = [r for _, r in data]
    adv, _ = ADVANTAGES.get(name)(
        torch.tensor(rewards, dtype=torch.float64), torch.tensor(groups), eps=1e-6
    )
    ref = _loop_reference(rewards, groups, name, 1e-6)
    assert not torch.isnan(adv).any()
    for a, b in zip(adv.tolist(), ref, strict=True):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
