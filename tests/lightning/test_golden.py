"""Behaviour pin of the RL step: on a fixed rollout (tiny Qwen2.5-VL, replay engine), the
advantages, the objective loss and the gradients of one step equal the values recorded in
``golden/rl_step.pt``, for every objective preset and credit method.

The recorded values come from the code before the RL step was restructured (issue 11); a
refactor must keep them (float32 reorderings allowed, ~1e-6 relative). Methods that read the
attention probe (SAYO, AT-RL) get 2e-5: the probe's softmax block and AT-RL's connectivity
thresholds take other CPU kernels on other machines (recorded on one CPU, measured on an AMD
EPYC: SAYO's reward total 4e-6 relative, one gradient entry 3e-5 relative of a 1e-6 value);
and a loss that sums to ~0 (group-normalised advantages) is compared to 1e-7 absolute, the
float32 resolution of its unit-scale terms. A deliberate change
of behaviour regenerates the file, in the same commit, with::

    VISGRPO_REGENERATE_GOLDEN=1 PYTHONPATH=. python -m pytest tests/lightning/test_golden.py

What is stored per (preset, credit): the advantages [B, T] the objective saw (0 at padding),
the summed objective loss, the total reward, the gradient norm of every parameter and the
first 16 gradient entries of three named parameters. ``input_ids`` and a weight checksum of
the tiny model are stored once, so a changed workspace (data, tokenizer, model builder)
fails with its own message instead of as a behaviour change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .fixed_step import CREDITS, PRESETS, rl_module, run_step

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "rl_step.pt"
REGENERATE = os.environ.get("VISGRPO_REGENERATE_GOLDEN") == "1"
SLICED = ("lm_head.weight", "self_attn.q_proj.weight", "mlp.down_proj.weight")
RTOL = 1e-6
ATTENTION_RTOL = 2e-5  # credit methods whose values pass through the attention probe
LOSS_ATOL = 1e-7


def weight_checksum(module) -> float:
    return float(sum(p.detach().double().abs().sum() * (i + 1) for i, p in enumerate(module.policy.parameters())))


def summarise(record: dict) -> dict:
    grads = record["grads"]
    out = {
        "advantages": record["advantages"],
        "rewards": record["rewards"],
        "loss": record["loss"],
        "reward_total": record["reward_total"],
        "grad_norms": {n: float(g.double().norm()) for n, g in grads.items()},
    }
    for suffix in SLICED:
        name = next(n for n in sorted(grads) if n.endswith(suffix))
        out[f"slice:{suffix}"] = grads[name].flatten()[:16].double().clone()
    return out


@pytest.fixture(scope="module")
def golden():
    if REGENERATE:
        store = {"cases": {}}
        yield store
        GOLDEN.parent.mkdir(exist_ok=True)
        tmp = GOLDEN.with_suffix(".tmp")
        torch.save(store, tmp)
        tmp.replace(GOLDEN)  # atomic
        return
    yield torch.load(GOLDEN, weights_only=True)


def close(actual, expected, what: str, rtol: float = RTOL, atol: float = 0.0) -> None:
    actual, expected = torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    atol = max(atol, rtol * scale + 1e-12)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("credit", CREDITS)
@pytest.mark.parametrize("objective", PRESETS)
def test_rl_step_matches_the_recorded_behaviour(in_workspace, monkeypatch, golden, objective, credit):
    module = rl_module(objective, credit)
    checksum = weight_checksum(module)  # before the step
    record = run_step(module, monkeypatch)
    got = summarise(record)
    if REGENERATE:
        golden.setdefault("input_ids", record["input_ids"])
        golden.setdefault("weight_checksum", checksum)
        golden["cases"][f"{objective}/{credit}"] = got
        return
    assert torch.equal(record["input_ids"], golden["input_ids"]), "the fixed rollout changed (workspace data/tokenizer)"
    assert checksum == pytest.approx(golden["weight_checksum"], rel=1e-9), "the tiny model changed"
    want = golden["cases"][f"{objective}/{credit}"]
    rtol = ATTENTION_RTOL if ("sayo" in credit or "atrl" in credit) else RTOL
    assert float(want["advantages"].abs().max()) > 0
    close(got["rewards"], want["rewards"], "rewards", rtol)
    close(got["reward_total"], want["reward_total"], "reward/total", rtol)
    close(got["advantages"], want["advantages"], "advantages", rtol)
    close(got["loss"], want["loss"], "loss", rtol, LOSS_ATOL)
    assert set(got["grad_norms"]) == set(want["grad_norms"])
    names = sorted(want["grad_norms"])
    close([got["grad_norms"][n] for n in names], [want["grad_norms"][n] for n in names], "gradient norms", rtol)
    for suffix in SLICED:
        close(got[f"slice:{suffix}"], want[f"slice:{suffix}"], f"gradient of {suffix}", rtol)
