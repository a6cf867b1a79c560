"""``python -m experiments.gpu_check`` in its CPU mode: the tiny model in float32 runs every
check and writes one JSON file with the figures and a status per check.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from experiments.gpu_check.__main__ import main
from experiments.gpu_check.workspace import SIZES, _coverage, build_rows
from visgrpo.credit import CREDIT_METHODS

pytestmark = pytest.mark.slow

CHECKS = {
    "setup", "probe_exactness_float32", "memory_throughput", "train_dapo_dynamic_sampling", "qlora_nf4",
    *(f"train_{credit}" for credit in CREDIT_METHODS.names()),  # every registered method, "none" included
}


def test_cell_coverage_by_hand():
    # [1.5, 3.25] over cells [0,1], [1,2], [2,3], [3,4], [4,5]
    assert _coverage(1.5, 3.25, 5).tolist() == [0.0, 0.5, 1.0, 0.25, 0.0]


def test_rows_carry_evidence_of_the_square():
    (row,) = build_rows(SIZES["tiny"], num=1)
    g = 8  # 64 image tokens
    mask = torch.tensor(row["evidence_mask"]).view(g, g)
    target = torch.tensor(row["evidence_target"])
    assert row["image"].size == (224, 224)
    assert target.sum() == pytest.approx(1.0)
    # the square's pixels, counted on the image, equal its covered token area x 28^2
    px = torch.tensor(list(row["image"].getdata())).view(224, 224, 3)
    painted = (px != torch.tensor([236, 236, 230])).any(-1).sum().item()
    assert mask.sum().item() * 28 * 28 == pytest.approx(painted)
    assert ((torch.tensor(row["region_labels"]) == 1) == (torch.tensor(row["evidence_mask"]) > 0)).all()
    # the target peaks inside the square
    assert mask.flatten()[target.argmax()] > 0


def test_cpu_mode_writes_every_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    rc = main(["--tiny", "--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work")])
    report = json.loads(out.read_text())
    assert set(report["checks"]) == CHECKS
    failed = {k: v.get("error") for k, v in report["checks"].items() if v["status"] == "fail"}
    assert rc == 0 and not failed, failed
    assert report["checks"]["qlora_nf4"]["status"] == "skipped"  # CUDA only
    meta = report["meta"]
    assert meta["size"] == "tiny" and meta["dtype"] == "float32" and meta["device"].startswith("cpu")
    assert {"torch", "transformers"} <= set(meta["versions"])
    exact = report["checks"]["probe_exactness_float32"]
    assert exact["max_abs_diff"] < 1e-5 and exact["image_tokens"] == 64
    mem = report["checks"]["memory_throughput"]
    assert set(mem["modes"]) == {"sdpa", "probe_one_grad", "probe_all", "eager_attn"}
    assert all(math.isfinite(m["seconds"]) and m["seconds"] > 0 for m in mem["modes"].values())
    assert math.isfinite(mem["fwd_bwd_tokens_per_s"]) and mem["fwd_bwd_tokens_per_s"] > 0
    for credit in CREDIT_METHODS.names():  # every registered method
        run = report["checks"][f"train_{credit}"]
        assert run["steps_done"] == run["steps_asked"] == 2
        assert run["params_changed"] > 0
        assert all(t > 0 for t in run["tokens_per_step"])
        assert math.isfinite(run["train_tokens_per_s"]) and math.isfinite(run["last_metrics"]["loss/total"])
    assert "ease/loss" in report["checks"]["train_ease"]["last_metrics"]
    assert "sayo/reward" in report["checks"]["train_sayo"]["last_metrics"]
    assert report["summary"] == {"pass": 4 + len(CREDIT_METHODS.names()), "fail": 0, "skipped": 1}


def test_time_budget_skips_the_remaining_checks(tmp_path):
    out = tmp_path / "gpu_check.json"
    main(["--tiny", "--device", "cpu", "--out", str(out), "--budget", "0", "--work", str(tmp_path / "w")])
    report = json.loads(out.read_text())
    assert {v["status"] for v in report["checks"].values()} == {"skipped"}
    assert set(report["checks"]) == CHECKS
