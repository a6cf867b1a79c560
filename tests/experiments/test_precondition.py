"""The learning precondition (issue 22) on hand-made numbers, and the report's refusal."""

from __future__ import annotations

import json
import math

import pytest

from experiments.mechanism import precondition, report

CHANCE = 1 / 6


def _curve(first: float, last: float, n: int = 30) -> list[list[float]]:
    """A sampled-accuracy history: ``first`` for the first n/2 steps, ``last`` after."""
    return [[s, first if s < n // 2 else last] for s in range(n)]


def _learns(**over):
    args = dict(warm_accuracy=0.30, final_accuracy={s: 0.42 + 0.01 * s for s in range(5)},  # gains .12-.16
                sampled_curves={s: _curve(0.25, 0.35) for s in range(5)}, chance=CHANCE, no_image_warm=0.17,
                no_image_final={s: 0.18 for s in range(5)})
    return precondition.check(**(args | over))


def test_window_means_by_hand():
    assert precondition.window_means([[2, 3.0], [0, 1.0], [1, 2.0], [3, 4.0]], 2) == (1.5, 3.5)  # sorted by step
    assert all(math.isnan(x) for x in precondition.window_means([[0, 1.0], [1, 2.0], [2, 3.0]], 2))  # overlap


def test_a_baseline_that_learns_meets_every_part():
    out = _learns()
    assert out["met"] and out["failed"] == []
    assert out["size"]["gain"] == pytest.approx(0.14) and out["size"]["needed"] == pytest.approx(0.10)
    assert out["significance"]["p_t"] < 1e-4 and out["significance"]["lo"] > 0.1
    assert out["sampled_rising"]["rise"] == pytest.approx(0.10)
    assert precondition.refusal(out) is None


def test_half_the_error_is_enough_near_the_ceiling():
    # warm 0.90: error 0.10, half of it 0.05 < 0.10, so +0.06 passes the size part
    out = _learns(warm_accuracy=0.90, final_accuracy={s: 0.96 + 0.001 * s for s in range(5)})
    assert out["size"]["needed"] == pytest.approx(0.05) and out["size"]["ok"]


def test_each_failure_is_named():
    small = _learns(final_accuracy={s: 0.35 + 0.01 * s for s in range(5)})  # +0.07 mean
    assert small["failed"] == ["size"] and not small["met"]
    few = _learns(final_accuracy={s: 0.42 + 0.01 * s for s in range(4)})
    assert few["failed"] == ["significance"]  # 4 seeds < 5
    noisy = _learns(final_accuracy={0: 0.10, 1: 0.70, 2: 0.20, 3: 0.60, 4: 0.52})  # mean gain +0.124, p ~ 0.4
    assert "significance" in noisy["failed"] and noisy["size"]["ok"]
    flat = _learns(sampled_curves={s: _curve(0.3, 0.3) for s in range(5)})
    assert flat["failed"] == ["sampled_rising"]
    text = _learns(no_image_final={s: 0.40 for s in range(5)})  # answers without the image
    assert text["failed"] == ["needs_image"]
    unmeasured = _learns(no_image_warm=None)
    assert unmeasured["failed"] == ["needs_image"]
    reason = precondition.refusal(text)
    assert reason.startswith("refused") and "needs_image" in reason
    assert "NOT met" in precondition.describe(text) and "Size met" in precondition.describe(text)


def _write(res, config, seed, final, curves=None):
    path = res / "runs" / f"{config}_s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config, "group": "x", "dose": None, "seed": seed, "steps": 30,
                                "final": final, "curves": curves or {}}))


@pytest.mark.parametrize("learns", [True, False])
def test_report_refuses_accuracy_claims_when_the_baseline_does_not_learn(tmp_path, learns):
    res = tmp_path / "res"
    _write(res, "warmstart", 0, {"val/accuracy": 0.30, "val/accuracy_no_image": 0.17})
    for s in range(5):
        acc = 0.42 + 0.01 * s if learns else 0.30 + 0.01 * (s - 2)
        curve = {report.SAMPLED: _curve(0.25, 0.35 if learns else 0.25)}
        _write(res, "dapo", s, {"val/accuracy": acc, "val/accuracy_no_image": 0.16}, curve)
        _write(res, "ease_lambda0.1", s, {"val/accuracy": acc + 0.05 + 0.01 * s, "val/accuracy_no_image": 0.16})
    md = report.build(res, chance=CHANCE).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| EASE improves accuracy"))
    pre = json.loads((res / "precondition.json").read_text())
    assert pre["met"] is learns
    if learns:
        assert "**Met**" in md and "supported at this scale" in row
    else:
        assert "**Not met**" in md and "refused: the baseline fails the learning precondition" in row
        assert set(pre["failed"]) == {"size", "significance", "sampled_rising"}
