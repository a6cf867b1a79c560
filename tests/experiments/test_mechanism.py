"""The mechanism study: seed statistics by hand, arms and resumable results, the report."""

from __future__ import annotations

import json
import math

import pytest

from experiments.mechanism import report, study
from experiments.mechanism.stats import bootstrap_ci, paired, paired_t_p, sign_flip_p


def test_sign_flip_p_by_hand():
    # [1, 2, 3]: of the 8 sign assignments only +++ and --- reach |mean| 2 -> p = 2/8.
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)
    # [1, -1]: every assignment has |mean| >= 0 -> p = 1.
    assert sign_flip_p([1.0, -1.0]) == pytest.approx(1.0)
    # [1, 1, -0.5]: signed sums 1.5, 2.5, -0.5, 0.5, -0.5, 0.5, -2.5, -1.5; |sum| >= 1.5 in 4 of 8.
    assert sign_flip_p([1.0, 1.0, -0.5]) == pytest.approx(0.5)
    # [3, 1, 1, 1, 1]: only all-plus and all-minus reach |sum| 7 -> 2/32.
    assert sign_flip_p([3.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(2 / 32)


def test_bootstrap_ci_bounds():
    assert bootstrap_ci([0.4, 0.4, 0.4]) == pytest.approx((0.4, 0.4, 0.4))
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    m, lo, hi = bootstrap_ci([0.0, 1.0, float("nan")], n_boot=4000)
    assert m == 0.5 and lo == 0.0 and hi == 1.0  # resamples of 2 values: means 0, 0.5, 1
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_paired_uses_common_seeds():
    out = paired({0: 2.0, 1: 3.0, 2: 4.0, 5: 9.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert out["n"] == 3 and out["mean"] == pytest.approx(2.0)  # diffs 1, 2, 3
    assert out["p"] == pytest.approx(0.25) and 1.0 <= out["lo"] <= out["hi"] <= 3.0
    # t = 2 / (1 / sqrt(3)) = 2 sqrt(3), df = 2: the two-sided p is 1 - t / sqrt(t^2 + 2) in closed form
    t = 2 * math.sqrt(3)
    assert out["p_t"] == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)


def test_paired_t_p_edge_cases():
    assert math.isnan(paired_t_p([1.0]))
    assert paired_t_p([0.5, 0.5, 0.5]) == 0.0 and paired_t_p([0.0, 0.0]) == 1.0
    assert paired_t_p([1.0, -1.0, 1.0, -1.0]) == pytest.approx(1.0)


def test_arms_cover_the_doses_and_the_registry():
    arms = study.configurations()
    assert [a.dose for a in arms.values() if a.group == "ease_dose"] == list(study.EASE_DOSES)
    assert [a.dose for a in arms.values() if a.group == "sayo_dose"] == list(study.SAYO_DOSES)
    assert {"dapo", "dapo+vgpo", "dapo+atrl", "dapo+ease+atrl", "grpo"} <= set(arms)
    cfg = arms["ease_lambda0.1"].credit_yaml()
    assert cfg["model"]["init_args"]["credit"] == [{"class_path": study.EASE, "init_args": {"lambda_attn": 0.1}}]
    assert cfg["trainer"]["callbacks"] == [{"class_path": study.NO_IMAGE}]


def _result(results, config, seed, **final):
    arms = study.configurations()
    arm = arms.get(config)
    path = results / "runs" / f"{config}_s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config, "group": arm.group if arm else "warmstart",
                                "dose": arm.dose if arm else None, "seed": seed, "steps": 60, "limit_val": 200,
                                "final": final}))


def test_run_one_skips_an_existing_result(tmp_path):
    st = study.Study(study.Workdir(tmp_path), tmp_path / "res")
    _result(tmp_path / "res", "dapo", 0, **{"val/accuracy": 0.5})
    assert study.run_one(st, study.configurations()["dapo"], 0, study.QUICK) is None  # no subprocess started


def test_report_deltas_and_verdicts(tmp_path):
    res = tmp_path / "res"
    for s, (base, ease) in enumerate([(1.0, 2.0), (1.1, 2.3), (0.9, 2.2)]):
        _result(res, "dapo", s, **{"val/accuracy": 0.4, "val/ease/evidence_ratio": base, "val/evidence_ratio_L0": 1.0,
                                   "val/atrl/clusters_per_response": 1.0, "val/response_length": 6.0})
        _result(res, "ease_lambda0.1", s, **{"val/accuracy": 0.4, "val/ease/evidence_ratio": ease,
                                             "val/evidence_ratio_L0": 1.0, "val/response_length": 6.0})
    _result(res, "warmstart", 0, **{"val/accuracy": 0.41, "val/ease/evidence_ratio": 0.95})
    out = report.build(res, label="test")
    rows = {(r["config"], r["quantity"]): r for r in json.loads((res / "summary.json").read_text())}
    r = rows[("ease_lambda0.1", "val/ease/evidence_ratio")]
    assert r["delta"] == pytest.approx(1.1667, abs=1e-3)  # diffs 1.0, 1.2, 1.3
    assert r["p"] == pytest.approx(0.25) and r["delta_lo"] > 0
    md = out.read_text()
    assert "test" in md and "EASE raises evidence attention" in md
    assert "not testable at this scale" in md  # AT-RL: one cluster per response
    not_run = next(line for line in md.splitlines() if line.startswith("Arms of the other claims, not run"))
    assert "sayo_weight1" in not_run and "dapo+atrl" not in not_run  # AT-RL's verdict comes from dapo's runs
    assert "| SAYO improves" not in md
    assert (res / "dose_response.png").stat().st_size > 1000


def test_relational_testbed_data_model_and_masks(tmp_path):
    from experiments.mechanism import testbed
    from visgrpo.data.io import load_dataset_dir

    work = study.Workdir(tmp_path)
    tb = testbed.Relational(num=12, vision_steps=2)
    data = testbed.build_data(work, tb)
    assert (tb.perceiving(work) / "perception.json").exists()  # the SFT starts from the pretrained tower
    ds, _ = load_dataset_dir(data / "train")
    row = ds[0]
    assert "reasoning" in ds.column_names and "evidence_mask" in ds.column_names
    assert len(row["evidence_mask"]) == 64  # 8x8 merged tokens
    assert testbed.TARGET.format(**row).startswith("<think>There are two ")  # the candidates chain
    tok = __import__("transformers").AutoTokenizer.from_pretrained(tb.model(work))
    ids = tok(row["reasoning"], add_special_tokens=False)["input_ids"]
    assert 48 <= len(ids) <= tb.max_new_tokens - 16  # a chain AT-RL splits into >= 3 clusters of 16
    assert tok.unk_token_id not in ids  # the vocabulary covers the chains
    overrides = testbed.data_overrides(work, tb)
    assert f"--data.val_path={data / 'validation'}" in overrides


def test_verdict_needs_the_ci_and_the_t_test():
    row = {"paired_n": 5, "p": 0.0625, "delta_lo": 0.1, "delta_hi": 0.3, "p_t": 0.01}
    assert report.verdict(row, 1, None).startswith("supported at this scale")
    assert report.verdict(row | {"p_t": 0.2}, 1, None).startswith("weak evidence for")
    assert report.verdict(row, -1, None).startswith("contradicted")
    assert report.verdict(row | {"delta_lo": -0.1}, 1, None).startswith("not supported: no detectable change")
    assert report.verdict(row | {"paired_n": 2}, 1, None).startswith("2 paired seed(s): too few")
    assert report.verdict(row, 1, "one cluster").startswith("not testable at this scale (one cluster")
