"""KL estimators k1/k2/k3 with d = ref_logp - logp: hand values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from visgrpo.objectives import KL_ESTIMATORS, kl_penalty


def test_hand_values():
    # logp = (0, -1), ref = (-0.5, 0) -> d = ref - logp = (-0.5, 1)
    # k1 = -d = (0.5, -1); k2 = d^2/2 = (0.125, 0.5)
    # k3 = e^d - d - 1 = (e^-0.5 + 0.5 - 1, e - 1 - 1) = (0.1065307, 0.7182818)
    logp = torch.tensor([[0.0, -1.0, 3.0]], dtype=torch.float64)
    ref = torch.tensor([[-0.5, 0.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])  # the third token is padding -> 0
    expect = {
        "k1": [0.5, -1.0, 0.0],
        "k2": [0.125, 0.5, 0.0],
        "k3": [math.exp(-0.5) - 0.5, math.e - 2.0, 0.0],
    }
    for name, values in expect.items():
        kl, m = kl_penalty(name, logp, ref, mask)
        torch.testing.assert_close(kl[0], torch.tensor(values, dtype=torch.float64))
        assert m["kl_mean"].item() == pytest.approx(sum(values[:2]) / 2)
    assert math.isclose(math.exp(-0.5) - 0.5, 0.1065307, rel_tol=1e-6)


def test_k3_gradient_and_nonnegativity():
    # dk3/dlogp = d(e^d - d - 1)/dd * dd/dlogp = (e^d - 1) * (-1) = 1 - e^d
    logp = torch.tensor([[0.0, -1.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-0.5, 0.0]], dtype=torch.float64)
    kl, _ = kl_penalty("k3", logp, ref, torch.ones(1, 2, dtype=torch.bool))
    (g,) = torch.autograd.grad(kl.sum(), logp)
    torch.testing.assert_close(g[0], torch.tensor([1 - math.exp(-0.5), 1 - math.e], dtype=g.dtype))
    d = torch.linspace(-5, 5, 101)
    assert (KL_ESTIMATORS.get("k3")(d) >= 0).all()


def test_unknown_estimator_lists_valid():
    x = torch.zeros(1, 1)
    with pytest.raises(KeyError, match="k1, k2, k3"):
        kl_penalty("k4", x, x, torch.ones(1, 1, dtype=torch.bool))
