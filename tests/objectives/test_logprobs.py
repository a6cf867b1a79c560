"""Chunked token log-probs / entropy: hand values, exactness and gradients vs unchunked,
and a check that no full-vocabulary float32 tensor larger than one chunk is created.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from visgrpo.objectives import selective_log_softmax, token_logprobs_and_entropy


def _reference(logits, labels, temperature=1.0):
    """Unchunked autograd reference in float32 (float64 when the input is float64)."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    lp = torch.log_softmax(logits.to(dtype) / temperature, dim=-1)  # [B, T, V]
    logp = lp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logp = torch.where(labels >= 0, logp, torch.zeros_like(logp))
    ent = -(lp.exp() * lp).sum(-1)
    return logp, ent


def test_hand_values():
    # logits (0, ln 3) -> p = (1/4, 3/4); label 1 -> log 0.75 = -0.2876821
    # H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.3465736 + 0.2157616 = 0.5623351
    # temperature 2 on logits (0, 2 ln 3) gives the same distribution.
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 2 * math.log(3.0)]]])
    labels = torch.tensor([[1, 1]])
    logp, ent = token_logprobs_and_entropy(logits[:, :1], labels[:, :1])
    assert logp.item() == pytest.approx(-0.2876821, abs=1e-6)
    assert ent.item() == pytest.approx(0.5623351, abs=1e-6)
    logp, ent = token_logprobs_and_entropy(logits[:, 1:], labels[:, 1:], temperature=2.0)
    assert logp.item() == pytest.approx(-0.2876821, abs=1e-6)
    assert ent.item() == pytest.approx(0.5623351, abs=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 8, 13, 1024])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_equals_unchunked_values_and_grads(chunk_size, temperature):
    # B=3, T=7: chunk sizes 3, 5, 8, 13 do not divide T (or B*T = 21)
    gen = torch.Generator().manual_seed(0)
    B, T, V = 3, 7, 11
    logits = (3 * torch.randn(B, T, V, generator=gen, dtype=torch.float64)).requires_grad_(True)
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[1, 4] = -100  # ignored position
    w1, w2 = torch.randn(B, T, generator=gen), torch.randn(B, T, generator=gen)
    logp, ent = token_logprobs_and_entropy(logits, labels, temperature, chunk_size)
    rl, re = _reference(logits, labels, temperature)
    torch.testing.assert_close(logp, rl.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, re.float(), rtol=1e-5, atol=1e-5)
    assert logp[1, 4].item() == 0.0
    (g,) = torch.autograd.grad((logp * w1 + ent * w2).sum(), logits)
    (gr,) = torch.autograd.grad((rl * w1 + re * w2).sum(), logits)
    torch.testing.assert_close(g, gr, rtol=1e-5, atol=1e-5)
    # the gradient of the ignored label's log-prob is 0: only the entropy term remains
    (g_lp,) = torch.autograd.grad(
        token_logprobs_and_entropy(logits, labels, 1.0, 4)[0].sum(), logits
    )
    assert torch.equal(g_lp[1, 4], torch.zeros(V, dtype=g_lp.dtype))


def test_chunk_size_does_not_change_the_result():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 9, 17, generator=gen)
    labels = torch.randint(0, 17, (2, 9), generator=gen)
    base = token_logprobs_and_entropy(logits, labels, chunk_size=10_000)
    for c in (1, 2, 4, 7, 9, 10):
        out = token_logprobs_and_entropy(logits, labels, chunk_size=c)
        # each row is computed by the same ops whatever the block: bitwise identical
        assert torch.equal(out[0], base[0]) and torch.equal(out[1], base[1])
    assert torch.equal(selective_log_softmax(logits, labels, chunk_size=4), base[0])


def test_bf16_noncontiguous_slice_and_masked_vocab():
    gen = torch.Generator().manual_seed(2)
    full = torch.randn(2, 12, 19, generator=gen).to(torch.bfloat16)
    full[..., 5] = float("-inf")  # a banned token: p = 0, must not give NaN
    full.requires_grad_(True)
    logits = full[:, 3:10]  # non-contiguous view like logits[:, P-1:P-1+T]
    labels = torch.randint(0, 5, (2, 7), generator=gen)
    logp, ent = token_logprobs_and_entropy(logits, labels, chunk_size=3)
    rl, _ = _reference(logits.detach(), labels)
    # the plain entropy would compute 0 * -inf = NaN at the banned token; clamp it
    lsm = torch.log_softmax(logits.detach().float(), -1)
    re = -(lsm.exp() * lsm.clamp(min=-1e30)).sum(-1)
    torch.testing.assert_close(logp, rl, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ent, re, rtol=1e-5, atol=1e-5)
    (g,) = torch.autograd.grad((logp + ent).sum(), full)
    assert g.dtype == torch.bfloat16 and torch.isfinite(g.float()).all()
    assert torch.equal(g[:, :3], torch.zeros_like(g[:, :3]))  # outside the slice
    x = logits.detach().float().requires_grad_(True)
    rl2, _ = _reference(x, labels)
    re2 = -(torch.softmax(x, -1) * torch.log_softmax(x, -1).clamp(min=-1e30)).sum(-1)
    (gr,) = torch.autograd.grad((rl2 + re2).sum(), x)
    torch.testing.assert_close(g[:, 3:10].float(), gr, rtol=2e-2, atol=2e-2)


class _LargestFloat32(TorchDispatchMode):
    """Records the largest float32 tensor produced by any op (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.largest = max(self.largest, t.numel())
        return out


def test_no_float32_tensor_larger_than_one_chunk():
    B, T, V, chunk = 4, 10, 64, 6
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(B, T, V, generator=gen).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, V, (B, T), generator=gen)
    with _LargestFloat32() as mode:
        logp, ent = token_logprobs_and_entropy(logits, labels, chunk_size=chunk)
        (logp.sum() + ent.sum()).backward()
    # blocks hold at most `chunk` rows: k = chunk // T rows-of-T when T <= chunk, else
    # `chunk` positions of one row -> at most 6 * 64 = 384 float32 values at once,
    # versus B*T*V = 2560 for the unchunked computation.
    assert mode.largest <= chunk * V
    with _LargestFloat32() as ref_mode:
        rl, re = _reference(logits, labels)
        (rl.sum() + re.sum()).backward()
    assert ref_mode.largest == B * T * V  # the check can fail: the plain path trips it


def test_bad_inputs():
    x = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="labels"):
        token_logprobs_and_entropy(x, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        token_logprobs_and_entropy(x, torch.full((1, 2), 3))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs_and_entropy(x, torch.zeros(1, 2, dtype=torch.long), temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        token_logprobs_and_entropy(x, torch.zeros(1, 2, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="logits"):
        token_logprobs_and_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
