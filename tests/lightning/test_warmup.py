"""The learning-rate warm-up: lr * (s + 1) / (warmup + 1) at optimiser step s, then lr; a
scheduler restored from its state (and its optimiser's) continues the same schedule.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from visgrpo.lightning.base import PolicyModule


def configured(warmup: int):
    module = SimpleNamespace(policy=torch.nn.Linear(2, 2),
                             hparams=SimpleNamespace(learning_rate=1e-3, weight_decay=0.0, warmup_steps=warmup))
    out = PolicyModule.configure_optimizers(module)
    return out["optimizer"], out["lr_scheduler"]["scheduler"]


def lrs(opt, sched, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_linear_warmup_values(warmup):
    expected = [1e-3 * min(1.0, (s + 1) / (warmup + 1)) for s in range(6)]
    assert lrs(*configured(warmup), 6) == pytest.approx(expected, rel=1e-12)


def test_restored_scheduler_continues_the_schedule():
    opt, sched = configured(4)
    lrs(opt, sched, 2)
    state = (opt.state_dict(), sched.state_dict())
    straight = lrs(opt, sched, 5)
    opt2, sched2 = configured(4)
    opt2.load_state_dict(state[0])
    sched2.load_state_dict(state[1])
    assert lrs(opt2, sched2, 5) == straight
    assert straight == pytest.approx([6e-4, 8e-4, 1e-3, 1e-3, 1e-3], rel=1e-12)
