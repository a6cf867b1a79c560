"""Scaling runner (experiments/bench/scaling.py): statistics and design by hand (fast), and a
tiny interleaved run end to end (slow: it starts a visgrpo and a TRL worker per point).
"""

from __future__ import annotations

import json
import math

import pytest

from experiments.bench.harness import credit_methods
from experiments.bench.scaling import (
    Point,
    axis_points,
    exponents,
    grid,
    growth_exponent,
    main,
    quantiles,
    summarise_point,
    targets,
)


def test_growth_exponent_by_hand():
    # cost = 3 * size^2 exactly -> slope 2; a noisy third point pulls it by a known amount
    assert growth_exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    # log sizes 0, ln2, 2 ln2 (mean ln2); log costs 0, 0, 2 ln2 -> slope (2 ln2 * ln2) / (2 ln2^2) = 1
    assert growth_exponent([1, 2, 4], [1, 1, 4]) == pytest.approx(1.0)
    assert growth_exponent([1, 2], [0.5, -0.1]) is None  # an extra within noise: no fit
    assert growth_exponent([3], [1.0]) is None


def test_quantiles_and_per_round_ratios_by_hand():
    q = quantiles([4.0, 1.0, 3.0, 2.0])
    # inclusive quartiles of 1..4: 1.75, 2.5, 3.25
    assert (q["q1"], q["median"], q["q3"], q["min"], q["max"]) == (1.75, 2.5, 3.25, 1.0, 4.0)
    steps = {"plain": [{"cpu_s": 2.0, "tokens": 10, "samples": 4}, {"cpu_s": 4.0, "tokens": 10, "samples": 4}],
             "sayo": [{"cpu_s": 2.2, "tokens": 10, "samples": 4}, {"cpu_s": 4.8, "tokens": 10, "samples": 4}]}
    s = summarise_point(steps)
    # per-round ratios 1.1 and 1.2 (not the ratio of medians 3.5 / 3.0)
    assert s["sayo"]["ratio"]["median"] == pytest.approx(1.15)
    assert s["sayo"]["extra_s"]["median"] == pytest.approx(0.5)  # 0.2 and 0.8
    assert s["plain"]["ratio"]["median"] == 1.0 and s["plain"]["cpu_s"]["median"] == 3.0


def test_full_grid_covers_each_axis_from_the_middle():
    pts = grid(quick=False)
    assert [p.response for p in axis_points(pts, "response")] == [32, 128, 512]
    assert [p.image_tokens for p in axis_points(pts, "image")] == [64, 256, 1024]
    model = axis_points(pts, "model")
    assert len(model) == 3 and model[-1].hidden >= 512 and model[-1].layers >= 8
    assert all(math.isqrt(p.image_tokens) ** 2 == p.image_tokens for p in pts)  # square images


def _fake_results(pts: list[Point]) -> dict:
    out = {}
    for p in pts:
        size = p.hidden * p.response * p.image_tokens
        steps = {"plain": [{"cpu_s": 1e-6 * size, "tokens": p.response, "samples": 4}] * 3,
                 "plain_control": [{"cpu_s": 1e-6 * size, "tokens": p.response, "samples": 4}] * 3,
                 "trl": [{"cpu_s": 1.5e-6 * size, "tokens": p.response, "samples": 4}] * 3}
        for m in credit_methods():
            steps[m] = [{"cpu_s": 1e-6 * size + 1e-9 * size ** 1.0, "tokens": p.response, "samples": 4}] * 3
        out[p.name] = {"params": p.hidden * 1000, "summary": summarise_point(steps)}
    return out


def test_exponents_and_targets_on_synthetic_costs():
    pts = grid(quick=False)
    res = _fake_results(pts)
    ex = exponents(pts, res)
    # plain cost and every extra are proportional to response x image tokens x hidden (params
    # = 1000 x hidden here): exponent 1 on each axis
    for axis in ("model", "response", "image"):
        assert ex[axis]["plain_step"] == pytest.approx(1.0)
        for m in credit_methods():
            assert ex[axis][m] == pytest.approx(1.0)
    t = targets(pts, res)
    assert t["point"] == axis_points(pts, "model")[-1].name
    assert t["trl_ratio"] == pytest.approx(1.5) and t["trl_met"]
    assert t["control_ratio"] == 1.0 and t["control_met"]
    assert all(t[f"{m}_met"] for m in credit_methods())


@pytest.mark.slow
def test_quick_scaling_run_end_to_end(tmp_path):
    doc = main(["--quick", "--rounds", "1", "--only", "h32L2-r16-i16", "--out", str(tmp_path),
                "--workdir", str(tmp_path / "work")])
    assert set(doc["results"]) == {"h32L2-r8-i16", "h32L2-r16-i16"}
    for res in doc["results"].values():
        r = res["point"]["response"]
        for lab in ["plain", "plain_control", *credit_methods(), "trl"]:
            (step,) = res["steps"][lab]  # one measured round
            assert step["label"] == lab and step["cpu_s"] > 0
            assert step["samples"] == 2 and step["tokens"] == 2 * r  # 1 prompt x G=2, lengths forced
    saved = json.loads((tmp_path / "scaling_quick.json").read_text())
    assert saved["targets"]["point"] == "h32L2-r8-i16"
    assert (tmp_path / "scaling_quick.png").stat().st_size > 0
    assert "A/A control" in (tmp_path / "scaling_quick.md").read_text()
