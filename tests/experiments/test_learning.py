"""The learning testbed: the confused SFT labels and the overlong calibration, by hand."""

from __future__ import annotations

import datasets
import pytest

from experiments.learning import overlong, testbed
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
