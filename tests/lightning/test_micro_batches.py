"""Credit statistics defined over the batch do not depend on ``micro_batch_size``: the same
fixed rollout trained with micro-batches of 8 and 2 responses (groups of 4, so 2 groups or
1 group per micro-batch) gives the advantages, the loss and the gradients of the
whole-batch step, for every credit method, fused and two-pass.

Before the batch statistics existed, VGPO min-maxed its visual focus per micro-batch: its
advantages then moved by up to 0.016 between micro-batch sizes on this rollout.
"""

from __future__ import annotations

import pytest
import torch

from .fixed_step import CREDITS, rl_module, run_step

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "two_pass"])
@pytest.mark.parametrize("credit", CREDITS)
def test_micro_batch_size_changes_nothing(in_workspace, monkeypatch, credit, fused):
    runs = {size: run_step(rl_module("dapo", credit, micro_batch_size=size, fused=fused), monkeypatch)
            for size in (16, 8, 2)}
    whole = runs[16]
    assert float(whole["advantages"].abs().max()) > 0
    scale = max(float(g.abs().max()) for g in whole["grads"].values())
    assert scale > 0
    for size in (8, 2):
        run = runs[size]
        torch.testing.assert_close(run["advantages"], whole["advantages"], rtol=1e-6, atol=1e-6,
                                   msg=lambda m, s=size: f"advantages, micro_batch_size {s}: {m}")
        assert run["loss"] == pytest.approx(whole["loss"], rel=1e-5, abs=1e-7)
        assert set(run["grads"]) == set(whole["grads"])
        for name, g in whole["grads"].items():
            torch.testing.assert_close(run["grads"][name], g, rtol=1e-4, atol=1e-5 * scale,
                                       msg=lambda m, s=size, n=name: f"gradient of {n}, micro_batch_size {s}: {m}")
