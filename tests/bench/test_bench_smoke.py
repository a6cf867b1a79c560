"""Benchmark harness: hand-checked pieces (fast) and a 1-step run of each side (slow)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from experiments.bench.__main__ import (
    add_ab_ratios,
    comparisons,
    parse_args,
    throughput_runs,
    write_markdown,
)
from experiments.bench.harness import (
    RunSpec,
    StepMeter,
    bench_reward,
    prepare_assets,
    run_worker,
    summarise,
)

RESULT_KEYS = {
    "label", "side", "credit", "step_times", "cpu_step_times", "completion_tokens",
    "samples_per_step", "median_step_s", "median_cpu_step_s", "samples_per_s", "tokens_per_s",
    "samples_per_cpu_s", "tokens_per_cpu_s", "cpu_share", "loadavg_start", "loadavg_end",
    "mean_completion_len", "rss_before_mb", "peak_rss_mb", "setup_s", "framework", "wall_s",
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
    the model processor's Geometry; its values for the bench's geometry, by hand.
    """
    import datasets

    from data_tools.masks import build_masks
    from visgrpo.data.geometry import Geometry

    # 56 x 56 image, pixel budget fixed at 56*56: not resized, 2 x 2 tokens of 28 px.
    geom = Geometry("qwen2_5_vl", patch_size=14, merge_size=2, min_pixels=3136, max_pixels=3136)
    row = {"id": ["b"], "width": [56], "height": [56], "boxes": [[[0.0, 0.0, 28.0, 14.0]]]}
    ev = build_masks(datasets.Dataset.from_dict(row), geom, progress=False)[0][0]
    assert ev["grid_thw"] == [[1, 4, 4]]
    # The box covers the top half of token (0, 0): coverage 14*28 / 28^2 = 0.5, label 1.
    assert ev["evidence_mask"] == [0.5, 0.0, 0.0, 0.0]
    assert ev["region_labels"] == [1, 0, 0, 0]
    # EASE target (docs/methods.md, EASE): box in tokens x [0, 1], y [0, 0.5]: centre (0.5, 0.25),
    # sigma (0.25, 0.125). Cell means of the bump ~ P(cell) per axis: x: Phi(2) - Phi(-2),
    # Phi(6) - Phi(2); y: Phi(6) - Phi(-2), Phi(14) - Phi(6). q = 0.9 * normalised + 0.1 / 4.
    px = [_phi(2) - _phi(-2), _phi(6) - _phi(2)]
    py = [_phi(6) - _phi(-2), _phi(14) - _phi(6)]
    bump = [a * b for a in py for b in px]  # row-major (y, x)
    want = [0.9 * v / sum(bump) + 0.025 for v in bump]  # ~ [0.9029, 0.0471, 0.025, 0.025]
    assert ev["evidence_target"] == pytest.approx(want, abs=1e-7)


def test_step_meter_discards_warmup(monkeypatch):
    import experiments.bench.harness as h

    clock = iter([10.0, 11.0, 11.5, 12.25])  # wall: start, then three step ends
    cpu = iter([2.0, 2.75, 3.0, 3.5])  # process CPU clock at the same four marks
    monkeypatch.setattr(h.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(h.time, "process_time", lambda: next(cpu))
    meter = StepMeter(warmup_steps=1)
    meter.start()
    for tokens in (100, 30, 50):
        meter.step_end(tokens, 8)
    res = meter.result(RunSpec(side="trl", model_dir="m", data_dir="d"), setup_s=0.0)
    assert res["step_times"] == [0.5, 0.75]  # warm-up step (1.0 s wall) dropped
    assert res["cpu_step_times"] == [0.25, 0.5]  # warm-up step (0.75 s CPU) dropped
    assert res["median_step_s"] == pytest.approx(0.625)
    assert res["median_cpu_step_s"] == pytest.approx(0.375)
    assert res["samples_per_s"] == pytest.approx(16 / 1.25)
    assert res["tokens_per_s"] == pytest.approx(80 / 1.25)
    # per CPU second: 16 samples and 80 tokens in 0.75 CPU s; 0.75 CPU s in 1.25 wall s
    assert res["samples_per_cpu_s"] == pytest.approx(16 / 0.75)
    assert res["tokens_per_cpu_s"] == pytest.approx(80 / 0.75)
    assert res["cpu_share"] == pytest.approx(0.6)
    assert res["mean_completion_len"] == pytest.approx(80 / 16)


def _fake(label: str, step: float, cpu: float) -> dict:
    """One run of 8 samples, 240 tokens per step: wall ``step`` s and CPU ``cpu`` s per step."""
    return {"label": label, "median_step_s": step, "samples_per_s": 8 / step, "tokens_per_s": 240 / step,
            "median_cpu_step_s": cpu, "samples_per_cpu_s": 8 / cpu, "tokens_per_cpu_s": 240 / cpu,
            "cpu_share": cpu / step, "peak_rss_mb": 1000.0, "rss_before_mb": 900.0,
            "mean_completion_len": 30.0, "samples_per_step": 8, "step_times": [step],
            "cpu_step_times": [cpu]}


# wall and CPU seconds per step of each run, in run order per label
STEPS = {"visgrpo_dapo": [0.10, 0.12], "trl_grpo": [0.15, 0.15], "visgrpo_dapo+ease": [0.12]}
CPU = {"visgrpo_dapo": [0.09, 0.10], "trl_grpo": [0.10, 0.12], "visgrpo_dapo+ease": [0.12]}


def _fake_runs(monkeypatch, tmp_path):
    import experiments.bench.__main__ as bench

    order = []

    def fake_worker(spec):
        order.append(spec.label)
        k = sum(o == spec.label for o in order) - 1
        return _fake(spec.label, STEPS[spec.label][k], CPU[spec.label][k])

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    a = parse_args(["--quick", "--credit", "ease"])
    base = RunSpec(side="visgrpo", model_dir="m", data_dir="d", workdir=str(tmp_path))
    runs = throughput_runs(base, a, log=lambda s: None)
    return order, runs


def test_alternation_and_ratios(monkeypatch, tmp_path):
    order, runs = _fake_runs(monkeypatch, tmp_path)
    # Round 0: visgrpo, TRL, then the credit run; round 1 flips the pair; quick: credit once.
    assert order == ["visgrpo_dapo", "trl_grpo", "visgrpo_dapo+ease", "trl_grpo", "visgrpo_dapo"]
    summary = {k: summarise(v) for k, v in runs.items()}
    assert summary["visgrpo_dapo"]["median_step_s"] == pytest.approx(0.11)
    assert summary["visgrpo_dapo"]["median_cpu_step_s"] == pytest.approx(0.095)
    comp = comparisons(runs, summary, ["ease"])
    vt = comp["visgrpo_over_trl"]
    # Wall samples/s medians: visgrpo median(80, 66.67) = 73.33, TRL 53.33 -> 1.375 (would meet
    # 1.2); paired wall rounds 0.15/0.10 = 1.5, 0.15/0.12 = 1.25 -> 1.375.
    assert vt["wall_throughput_ratio"] == pytest.approx((80 + 8 / 0.12) / 2 / (8 / 0.15))
    assert vt["wall_paired_ratio"] == pytest.approx(1.375)
    # CPU samples/CPU-s medians: visgrpo median(88.89, 80) = 84.44, TRL median(80, 66.67) =
    # 73.33 -> 1.1515 < 1.2: the target is checked on CPU time, so it is missed.
    assert vt["throughput_ratio"] == pytest.approx((8 / 0.09 + 80) / 2 / ((80 + 8 / 0.12) / 2))
    assert vt["tokens_ratio"] == pytest.approx(vt["throughput_ratio"])
    assert vt["paired_ratio"] == pytest.approx((0.10 / 0.09 + 0.12 / 0.10) / 2)  # 1.111, 1.2
    assert not vt["meets_target"]
    # best runs: visgrpo's fastest 8 / 0.09 = 88.9 samples/CPU-s, TRL's 8 / 0.10 = 80 -> 1.111
    assert vt["best_throughput_ratio"] == pytest.approx(0.10 / 0.09)
    assert comp["ease"]["best_step_time_ratio"] == pytest.approx(0.12 / 0.09)
    # EASE: wall 0.12 / 0.11 = 1.09 (would meet 1.25); CPU 0.12 / 0.095 = 1.263: missed.
    assert comp["ease"]["wall_step_time_ratio"] == pytest.approx(0.12 / 0.11)
    assert comp["ease"]["step_time_ratio"] == pytest.approx(0.12 / 0.095)
    assert comp["ease"]["paired_ratio"] == pytest.approx(0.12 / 0.09)  # round 0 only
    assert not comp["ease"]["meets_target"]


def test_markdown_shows_cpu_and_wall(monkeypatch, tmp_path):
    _, runs = _fake_runs(monkeypatch, tmp_path)
    summary = {k: summarise(v) for k, v in runs.items()}
    a = parse_args(["--quick", "--credit", "ease"])
    machine = {"cpu": "x", "logical_cores": 2, "usable_cores": 2, "threads_per_run": 1,
               "python": "3", "versions": {"torch": "t", "transformers": "tf", "trl": "r",
               "lightning": "l"}, "git_commit": "abc", "git_dirty": False, "time": "now"}
    micro = {"m.py": {"status": "ok", "args": ["--quick", "--workdir", "/tmp/w"], "seconds": 2.0,
                      "cpu_seconds": 1.5},
             "credit_overhead_bench.py": {"figures": {"ease_step_ratio": 1.02, "ease_extra_cpu_ms": 4.0,
                                                      "control_step_ratio": 0.995}}}
    comp = comparisons(runs, summary, ["ease"])
    add_ab_ratios(comp, micro)
    assert comp["ease"]["ab_meets_target"] and "ab_step_ratio" not in comp["visgrpo_over_trl"]
    res = {"machine": machine, "load": {"start": [3.5, 4.0, 4.25], "end": [5.0, 4.5, 4.0]},
           "settings": {**vars(a)}, "summary": summary, "comparisons": comp,
           "micro": {"m.py": micro["m.py"]}}
    md = write_markdown(res)
    assert "| load average (1 / 5 / 15 min) | start 3.5 / 4.0 / 4.2; end 5.0 / 4.5 / 4.0 |" in md
    # visgrpo_dapo: CPU 0.095 s, wall 0.110 s, share median(0.9, 0.833) = 0.87,
    # samples/CPU-s 84.4, samples/s 73.3, tokens/CPU-s 30 x 84.44 = 2533, tokens/s 2200
    assert "| visgrpo_dapo | 0.095 | 0.110 | 0.87 | 84.4 | 73.3 | 2533 | 2200 | 30.0 |" in md
    assert ("| visgrpo / TRL throughput (samples per second) | 1.15x | 1.16x | 1.11x | 1.38x | 1.38x | - "
            "| >= 1.2x | NO |") in md
    assert ("| DAPO+ease / DAPO step time | 1.26x | 1.33x | 1.33x | 1.09x | 1.20x | 1.020x (+4.0 ms), met | "
            "<= 1.25x | NO |") in md
    assert "| A/A control (plain / plain) | | | | | | 0.995x | | |" in md
    assert "- `m.py` --quick: ok (2.0 s wall, 1.5 s CPU)" in md  # --workdir and its path hidden


def test_every_micro_benchmark_script_exists():
    """The collected micro-benchmarks are all in experiments/bench (none reported missing)."""
    from experiments.bench.__main__ import HERE, MICRO

    assert [name for name, *_ in MICRO if not (HERE / name).exists()] == []


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


@pytest.mark.slow
def test_credit_overhead_ab_configures_like_the_module(tmp_path):
    """The A/B script gives the module the signal request RLVRModule builds for a method, and
    reports a ratio per method and the A/A control.
    """
    from experiments.bench import credit_overhead_bench as ab
    from experiments.bench.visgrpo_side import build_module

    model_dir, data_dir = prepare_assets(tmp_path)
    spec = RunSpec(side="visgrpo", model_dir=str(model_dir), data_dir=str(data_dir))
    plain = build_module(spec)
    for name in ("atrl", "ease"):
        ab.configure(plain, [name])
        ref = build_module(replace(spec, credit=[name]))
        assert plain.signal_request == ref.signal_request
        assert plain.loss_request == ref.loss_request
        assert [type(m) for m in plain.credit.methods] == [type(m) for m in ref.credit.methods]
    out = ab.main(["--rounds", "2", "--credit", "atrl", "--workdir", str(tmp_path)])
    assert out["rounds"] == 2 and out["responses"] == 8
    assert out["rollout_cpu_ms"] > 0 and out["plain_pass_cpu_ms"] > 0
    assert 0.5 < out["atrl_step_ratio"] < 2 and 0.5 < out["control_step_ratio"] < 2


def test_from_json_rederives_summaries_and_ratios(monkeypatch, tmp_path):
    """--from-json recomputes summaries, ratios and the markdown from the stored raw runs."""
    import json

    from experiments.bench.__main__ import main

    _, runs = _fake_runs(monkeypatch, tmp_path)
    machine = {"cpu": "x", "logical_cores": 2, "usable_cores": 2, "threads_per_run": 1, "python": "3",
               "versions": {"torch": "t", "transformers": "tf", "trl": "r", "lightning": "l"},
               "git_commit": "abc", "git_dirty": False, "time": "now"}
    src = tmp_path / "old.json"
    src.write_text(json.dumps({"machine": machine, "settings": vars(parse_args(["--quick"])),
                               "summary": {}, "comparisons": {}, "micro": {}, "runs": runs}))
    out = tmp_path / "new.json"
    assert main(["--from-json", str(src), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["summary"]["visgrpo_dapo"]["median_cpu_step_s"] == pytest.approx(0.095)
    assert res["comparisons"]["ease"]["step_time_ratio"] == pytest.approx(0.12 / 0.095)
    assert "| DAPO+ease / DAPO step time | 1.26x |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_probe_memory_bench_counts_the_probe_results():
    """The probe's extra memory over plain SDPA includes its own results (alive at the peak):
    a baseline read while the previous forward's results were still held undercounted it
    (15 MB extra for 32 MB of results at the benchmark size).
    """
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "experiments/bench/probe_memory_bench.py"
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    rows = {}
    for name in ("sdpa", "probe_all"):
        out = subprocess.run(
            [sys.executable, str(script), "--one", name, "--model", "tiny", "--layers", "4",
             "--image-tokens", "1024", "--response", "512", "--repeats", "1", "--threads", "1"],
            capture_output=True, text=True, env=env, check=True,
        )
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
    kept = rows["probe_all"]["attention_kept_mb"]
    assert kept == pytest.approx(4 * 512 * 1024 * 4 / 2**20)  # 4 layers x [1, 512, 1024] float32
    extra = rows["probe_all"]["peak_delta_mb"] - rows["sdpa"]["peak_delta_mb"]
    assert extra >= kept
