"""Benchmark harness: hand-checked pieces (fast) and a 1-step run of each side (slow)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from experiments.bench.__main__ import comparisons, parse_args, throughput_runs
from experiments.bench.harness import (
    RunSpec,
    StepMeter,
    bench_reward,
    prepare_assets,
    run_worker,
    summarise,
)

RESULT_KEYS = {
    "label", "side", "credit", "step_times", "completion_tokens", "samples_per_step",
    "median_step_s", "samples_per_s", "tokens_per_s", "mean_completion_len", "rss_before_mb",
    "peak_rss_mb", "setup_s", "framework", "wall_s",
}


def test_bench_reward_by_hand():
    text = "<think>x</think><answer>B</answer>"  # 7 + 1 + 8 + 8 + 1 + 9 = 34 characters
    # gold "B" occurs (1) + format (0.1) + 0.05 * (1 option letter / 34 characters)
    assert bench_reward(text, "B") == pytest.approx(1.1 + 0.05 / 34)
    # "A" absent, no format; characters A-D: "C", "D" -> 2 / 4
    assert bench_reward("xCDy", "A") == pytest.approx(0.05 * 2 / 4)


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_bench_evidence_is_built_by_data_tools_masks_by_hand():
    """prepare_assets builds the bench data's evidence with data_tools.masks.build_masks and
    the model processor's Geometry; its values for the bench's geometry, by hand."""
    import datasets

    from data_tools.masks import build_masks
    from visgrpo.rollout.vision import Geometry

    # 56 x 56 image, pixel budget fixed at 56*56: not resized, 2 x 2 tokens of 28 px.
    geom = Geometry("qwen2_5_vl", patch_size=14, merge_size=2, min_pixels=3136, max_pixels=3136)
    row = {"id": ["b"], "width": [56], "height": [56], "boxes": [[[0.0, 0.0, 28.0, 14.0]]]}
    ev = build_masks(datasets.Dataset.from_dict(row), geom, progress=False)[0][0]
    assert ev["grid_thw"] == [[1, 4, 4]]
    # The box covers the top half of token (0, 0): coverage 14*28 / 28^2 = 0.5, label 1.
    assert ev["evidence_mask"] == [0.5, 0.0, 0.0, 0.0]
    assert ev["region_labels"] == [1, 0, 0, 0]
    # EASE target (METHODS.md s5): box in tokens x [0, 1], y [0, 0.5]: centre (0.5, 0.25),
    # sigma (0.25, 0.125). Cell means of the bump ~ P(cell) per axis: x: Phi(2) - Phi(-2),
    # Phi(6) - Phi(2); y: Phi(6) - Phi(-2), Phi(14) - Phi(6). q = 0.9 * normalised + 0.1 / 4.
    px = [_phi(2) - _phi(-2), _phi(6) - _phi(2)]
    py = [_phi(6) - _phi(-2), _phi(14) - _phi(6)]
    bump = [a * b for a in py for b in px]  # row-major (y, x)
    want = [0.9 * v / sum(bump) + 0.025 for v in bump]  # ~ [0.9029, 0.0471, 0.025, 0.025]
    assert ev["evidence_target"] == pytest.approx(want, abs=1e-7)


def test_step_meter_discards_warmup(monkeypatch):
    import experiments.bench.harness as h

    clock = iter([10.0, 11.0, 11.5, 12.25])  # start, then three step ends
    monkeypatch.setattr(h.time, "perf_counter", lambda: next(clock))
    meter = StepMeter(warmup_steps=1)
    meter.start()
    for tokens in (100, 30, 50):
        meter.step_end(tokens, 8)
    res = meter.result(RunSpec(side="trl", model_dir="m", data_dir="d"), setup_s=0.0)
    assert res["step_times"] == [0.5, 0.75]  # warm-up step (1.0 s) dropped
    assert res["samples_per_s"] == pytest.approx(16 / 1.25)
    assert res["tokens_per_s"] == pytest.approx(80 / 1.25)
    assert res["mean_completion_len"] == pytest.approx(80 / 16)


def _fake(label: str, step: float) -> dict:
    return {"label": label, "median_step_s": step, "samples_per_s": 8 / step, "tokens_per_s": 240 / step,
            "peak_rss_mb": 1000.0, "rss_before_mb": 900.0, "mean_completion_len": 30.0,
            "samples_per_step": 8, "step_times": [step]}


def test_alternation_and_ratios(monkeypatch, tmp_path):
    import experiments.bench.__main__ as bench

    steps = {"visgrpo_dapo": [0.10, 0.12], "trl_grpo": [0.15, 0.15], "visgrpo_dapo+ease": [0.12]}
    order = []

    def fake_worker(spec):
        order.append(spec.label)
        return _fake(spec.label, steps[spec.label][sum(o == spec.label for o in order) - 1])

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    a = parse_args(["--quick", "--credit", "ease"])
    base = RunSpec(side="visgrpo", model_dir="m", data_dir="d", workdir=str(tmp_path))
    runs = throughput_runs(base, a, log=lambda s: None)
    # Round 0: visgrpo, TRL, then the credit run; round 1 flips the pair; quick: credit once.
    assert order == ["visgrpo_dapo", "trl_grpo", "visgrpo_dapo+ease", "trl_grpo", "visgrpo_dapo"]
    summary = {k: summarise(v) for k, v in runs.items()}
    assert summary["visgrpo_dapo"]["median_step_s"] == pytest.approx(0.11)
    comp = comparisons(runs, summary, ["ease"])
    # samples/s medians: visgrpo median(80, 66.67) = 73.33, TRL 53.33 -> 1.375
    assert comp["visgrpo_over_trl"]["throughput_ratio"] == pytest.approx((80 + 8 / 0.12) / 2 / (8 / 0.15))
    assert comp["visgrpo_over_trl"]["meets_target"]
    # paired rounds: 0.15/0.10 = 1.5, 0.15/0.12 = 1.25 -> median 1.375
    assert comp["visgrpo_over_trl"]["paired_ratio"] == pytest.approx(1.375)
    assert comp["ease"]["step_time_ratio"] == pytest.approx(0.12 / 0.11)  # <= 1.25: met
    assert comp["ease"]["meets_target"]


@pytest.mark.slow
def test_one_step_each_side(tmp_path):
    model_dir, data_dir = prepare_assets(tmp_path, n_rows=8)
    base = RunSpec(
        side="trl", model_dir=str(model_dir), data_dir=str(data_dir), prompts_per_step=2,
        group_size=2, max_completion_length=8, warmup_steps=0, measure_steps=1,
        workdir=str(tmp_path),
    )
    for side in ("trl", "visgrpo"):
        res = run_worker(replace(base, side=side), timeout=600)
        assert "error" not in res, res.get("error")
        assert set(res) >= RESULT_KEYS, RESULT_KEYS - set(res)
        assert res["framework"] == side
        assert len(res["step_times"]) == 1 and res["step_times"][0] > 0
        assert res["samples_per_step"] == 4  # 2 prompts x G = 2
        assert 0 < res["completion_tokens"][0] <= 4 * 8
        assert res["samples_per_s"] > 0 and res["tokens_per_s"] > 0
        assert res["peak_rss_mb"] >= res["rss_before_mb"] > 0
