"""The learning testbed: the answer-prior SFT labels, the overlong calibration and the comparison, by hand."""

from __future__ import annotations

import datasets
import pytest

from experiments.learning import overlong
from experiments.shapes import learning_testbed as testbed
from visgrpo.data.io import load_dataset_dir, save_dataset


def test_overlong_settings_by_hand():
    # longest 100 -> onset ceil(1.25 * 100) = 125, window ceil(125 / 4) = 32, L_max 157
    assert overlong.overlong_settings([80, 100, 7]) == {"onset": 125, "cache": 32, "max_new_tokens": 157}
    # 6-token answers: onset 8, window 2
    assert overlong.overlong_settings([6, 6, 5]) == {"onset": 8, "cache": 2, "max_new_tokens": 10}
    assert pytest.approx(0.25) == overlong.DAPO_WINDOW_TO_ONSET  # verl's DAPO recipe: 4096 of 20480
    with pytest.raises(ValueError, match="at least one"):
        overlong.overlong_settings([])


def test_relational_onset_would_have_cleared_the_warm_starts_chains():
    # issue 22: the relational testbed's onset was 102 of 128 while correct chains ran to 108
    settings = overlong.overlong_settings([77, 102, 108])
    assert settings["onset"] > 108 and settings["max_new_tokens"] - settings["cache"] == settings["onset"]


def test_skew_replaces_the_share_by_the_prior_colour_only(tmp_path):
    colours = ["red", "blue", "green", "orange", "purple", "yellow"] * 50
    ds = datasets.Dataset.from_dict({"id": [str(i) for i in range(len(colours))], "answer": colours,
                                     "question": ["q"] * len(colours)})
    save_dataset(ds, tmp_path / "src", meta={"k": 1})
    counts = testbed.skew(tmp_path / "src", tmp_path / "dst", "red", share=0.5, seed=0)
    out, meta = load_dataset_dir(tmp_path / "dst")
    assert meta == {"k": 1} and out["id"] == ds["id"] and out["question"] == ds["question"]
    changed = [(a, b) for a, b in zip(ds["answer"], out["answer"], strict=True) if a != b]
    assert all(b == "red" for _, b in changed) and all(a != "red" for a, _ in changed)
    assert counts["changed"] == len(changed) and 120 <= counts["replaced"] <= 180  # Binomial(300, 0.5): sd 8.7
    # a replaced answer that was already red does not change: changed ~ replaced * 5/6
    assert counts["changed"] == sum(a != "red" for a, r in zip(colours, out["answer"], strict=True) if r == "red")
    testbed.skew(tmp_path / "src", tmp_path / "none", "red", share=0.0, seed=0)
    assert load_dataset_dir(tmp_path / "none")[0]["answer"] == colours


def test_mde_by_hand():
    from scipy import stats

    from experiments.learning.compare import mde

    # n = 5, sd 0.02: (t_.975,4 + t_.8,4) * 0.02 / sqrt(5) = (2.7764 + 0.9410) * 0.02 / 2.2361 = 0.03325
    assert mde(0.02, 5) == pytest.approx((stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * 0.02 / 5 ** 0.5)
    assert mde(0.02, 5) == pytest.approx(0.03325, abs=1e-4)
    assert mde(0.02, 1) != mde(0.02, 1)  # NaN: no spread from one seed


def test_steps_to_reach_and_the_comparison_rows(tmp_path):
    import json

    from experiments.learning import compare

    assert compare.steps_to_reach([[19, 0.5], [9, 0.3], [29, 0.6]], 0.5) == 20.0  # step 19 is the 20th step
    assert compare.steps_to_reach([[9, 0.3]], 0.5) != compare.steps_to_reach([[9, 0.3]], 0.5)  # NaN: never
    runs = tmp_path / "runs"
    runs.mkdir()

    def write(config, seed, acc, curve, **extra):
        (runs / f"{config}_s{seed}.json").write_text(json.dumps({
            "config": config, "seed": seed, "steps": 30, "final": {"val/accuracy": acc, **extra},
            "curves": {"val/accuracy": curve}}))

    write("warmstart", 0, 0.3, [])
    for s in range(5):
        write("dapo", s, 0.40 + 0.01 * s, [[9, 0.35], [19, 0.45], [29, 0.40 + 0.01 * s]])  # mean final 0.42
        write("ease_lambda0.01", s, 0.42 + 0.01 * s + 0.002 * (s % 2), [[9, 0.43], [19, 0.45], [29, 0.5]],
              **{"val/ease/evidence_ratio": 1.5 + 0.1 * s})
    for s in range(5):
        (runs / f"dapo_s{s}.json").write_text((runs / f"dapo_s{s}.json").read_text().replace(
            '"val/accuracy": 0.4', '"val/ease/evidence_ratio": 1.0, "val/accuracy": 0.4'))
    out = compare.compare(compare.report.load(tmp_path), chance=1 / 6)
    rows = {r["arm"]: r for r in out["rows"]}
    ease = rows["ease_lambda0.01"]
    assert ease["delta"] == pytest.approx(0.0208)  # diffs 0.02, 0.022, 0.02, 0.022, 0.02
    assert ease["steps_to_dapo_final"] == 10.0 and ease["reached"] == 5  # 0.43 >= 0.42 at step 9
    assert rows["dapo"]["steps_to_dapo_final"] == 20.0  # 0.45 at step 19
    assert ease["target"] == "val/ease/evidence_ratio" and ease["target_delta"] == pytest.approx(0.7)
    assert out["power"]["winners_p05"] == ["ease_lambda0.01"] and out["power"]["n"] == 5
    assert "ease_lambda0.01" in compare.markdown(out, "t")
