"""Aggregation modes: hand values, token vs sequence weighting, micro-batch invariance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visgrpo.objectives import AGGREGATIONS, aggregate, global_normaliser

LOSS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 99.0, 99.0]])
MASK = torch.tensor([[True, True, True, True], [True, True, False, False]])


def test_hand_values_unequal_lengths():
    # real tokens: row 0 -> 1+2+3+4 = 10 (4 tokens), row 1 -> 10+20 = 30 (2 tokens); 99 = padding
    # token_mean            = (10 + 30) / 6            = 6.6666667
    # seq_mean_token_mean   = (10/4 + 30/2) / 2 = (2.5 + 15) / 2 = 8.75
    # seq_mean_token_sum_norm (L = 4) = (10/4 + 30/4) / 2 = (2.5 + 7.5) / 2 = 5.0
    # The difference: token_mean weights each token 1/6, so the short row's tokens weigh the
    # same as the long row's; seq_mean gives the short row's tokens 1/4 each vs 1/8.
    assert aggregate("token_mean", LOSS, MASK)[0].item() == pytest.approx(40 / 6)
    assert aggregate("seq_mean_token_mean", LOSS, MASK)[0].item() == pytest.approx(8.75)
    v, _ = aggregate("seq_mean_token_sum_norm", LOSS, MASK, length_norm=4)
    assert v.item() == pytest.approx(5.0)
    # default length_norm is the padded width T = 4 here
    assert aggregate("seq_mean_token_sum_norm", LOSS, MASK)[0].item() == pytest.approx(5.0)


def test_per_token_gradient_weights():
    # d/dL[i,t]: token_mean -> 1/6 everywhere; seq_mean_token_mean -> 1/(2*4) = 0.125 on row 0,
    # 1/(2*2) = 0.25 on row 1; padding gets 0.
    loss = LOSS.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(aggregate("token_mean", loss, MASK)[0], loss)
    torch.testing.assert_close(g, MASK.float() / 6)
    (g,) = torch.autograd.grad(aggregate("seq_mean_token_mean", loss, MASK)[0], loss)
    torch.testing.assert_close(g, torch.tensor([[0.125] * 4, [0.25, 0.25, 0.0, 0.0]]))


def test_empty_rows_are_not_counted():
    # row 1 has no real token: seq_mean over 1 sequence -> (1+2)/2 = 1.5, not 0.75
    loss = torch.tensor([[1.0, 2.0], [5.0, 5.0]])
    mask = torch.tensor([[True, True], [False, False]])
    assert aggregate("seq_mean_token_mean", loss, mask)[0].item() == pytest.approx(1.5)
    assert global_normaliser("seq_mean_token_mean", mask).item() == 1.0
    assert global_normaliser("token_mean", mask).item() == 2.0


def test_bad_normaliser_and_unknown_mode():
    with pytest.raises(ValueError, match="normaliser"):
        aggregate("token_mean", LOSS, MASK, normaliser=0.0)
    with pytest.raises(KeyError, match="seq_mean_token_mean, seq_mean_token_sum_norm, token_mean"):
        aggregate("sum", LOSS, MASK)
    with pytest.raises(KeyError, match="valid"):
        global_normaliser("sum", MASK)


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    mode=st.sampled_from(["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]),
    B=st.integers(2, 7),
    T=st.integers(1, 6),
)
def test_microbatch_sum_equals_full_batch(data, mode, B, T):
    seed = data.draw(st.integers(0, 10_000))
    gen = torch.Generator().manual_seed(seed)
    loss = torch.randn(B, T, generator=gen, dtype=torch.float64)
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    lengths[0] = max(lengths[0], 1)  # at least one real token in the batch
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    full, _ = aggregate(mode, loss, mask, length_norm=T)
    norm = global_normaliser(mode, mask)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, B - 1), max_size=3))))
    bounds = [0, *cuts, B]
    total = torch.zeros((), dtype=torch.float64)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        # each micro-batch trimmed to its own padded width, as a collator would
        width = max(1, int(mask[lo:hi].sum(-1).max()))
        part, _ = aggregate(
            mode, loss[lo:hi, :width], mask[lo:hi, :width], normaliser=norm, length_norm=T
        )
        total = total + part
    torch.testing.assert_close(total, full.to(torch.float64))


@settings(max_examples=50, deadline=None)
@given(data=st.data(), B=st.integers(1, 5), T=st.integers(1, 5))
def test_matches_loop_reference(data, B, T):
    vals = data.draw(st.lists(st.floats(-3, 3), min_size=B * T, max_size=B * T))
    mvals = data.draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
    loss = torch.tensor(vals, dtype=torch.float64).view(B, T)
    mask = torch.tensor(mvals).view(B, T)
    rows = [[vals[i * T + t] for t in range(T) if mvals[i * T + t]] for i in range(B)]
    n_tok = sum(len(r) for r in rows)
    nonempty = [r for r in rows if r]
    ref = {
        "token_mean": sum(sum(r) for r in rows) / max(n_tok, 1),
        "seq_mean_token_mean": sum(sum(r) / len(r) for r in nonempty) / max(len(nonempty), 1),
        "seq_mean_token_sum_norm": sum(sum(r) / T for r in nonempty) / max(len(nonempty), 1),
    }
    for mode in AGGREGATIONS:
        assert aggregate(mode, loss, mask)[0].item() == pytest.approx(ref[mode], abs=1e-9)
