"""The composite metrics papers report, against hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from visgrpo.evaluation.benchmarks import BENCHMARKS, composite_rows
from visgrpo.evaluation.benchmarks.hallusionbench import hallusionbench_metrics
from visgrpo.evaluation.benchmarks.logicvista import logicvista_metrics
from visgrpo.evaluation.benchmarks.pope import pope_metrics
from visgrpo.evaluation.benchmarks.wemath import wemath_metrics
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.report import metric_name


def test_pope_precision_recall_f1_yes_ratio_per_category():
    cases = [("adversarial", "yes", "Yes."), ("adversarial", "no", "Yes, there is."),
             ("adversarial", "yes", "No."), ("adversarial", "no", "There is no cup."),
             ("random", "yes", "Yes"), ("random", "no", "No")]
    items = [EvalItem(str(i), [], "?", gold, "pope", cat) for i, (cat, gold, _) in enumerate(cases)]
    m = pope_metrics(items, [c for *_, c in cases], [0.0] * len(cases))
    # adversarial: TP 1, FP 1, FN 1, TN 1
    for k in ("precision", "recall", "f1", "yes_ratio"):
        assert m[f"adversarial/{k}"] == pytest.approx(0.5)
    assert "acc" not in m and "random/acc" not in m  # the accuracy rows hold it
    assert m["random/f1"] == 1.0 and m["random/yes_ratio"] == 0.5
    # all: TP 2, FP 1, FN 1, TN 2
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(0.5)


def hb_item(cat, sub, set_id, fig, q):
    meta = {"category": cat, "subcategory": sub, "set_id": set_id, "figure_id": fig,
            "question_id": q, "visual_input": "0" if (cat, fig) == ("VS", "0") else "1"}
    return EvalItem("_".join(meta[k] for k in ("category", "subcategory", "set_id",
                                                "figure_id", "question_id")),
                    [], "?", "yes", "yorn", cat, meta)


def test_hallusionbench_question_figure_and_pair_accuracy():
    rows = [(("VS", "chart", "0", "0", "0"), 1.0), (("VS", "chart", "0", "1", "0"), 1.0),
            (("VS", "chart", "0", "2", "0"), 0.0), (("VS", "chart", "0", "1", "1"), 1.0),
            (("VD", "ill", "1", "0", "0"), 1.0), (("VD", "ill", "1", "1", "0"), 1.0)]
    items = [hb_item(*k) for k, _ in rows]
    m = hallusionbench_metrics(items, [""] * len(rows), [s for _, s in rows])
    assert m["aAcc"] == pytest.approx(5 / 6)
    assert m["fAcc"] == pytest.approx(3 / 4)  # VS figure 0 (no figure) skipped; VS_chart_0_2 wrong
    assert m["qAcc"] == pytest.approx(2 / 3)  # VS_chart_0 question 0 wrong on figure 2
    assert m["easy"] == 1.0  # figure 0: VS_chart_0 q0, VD_ill_1 q0 right
    assert m["hard"] == pytest.approx(2 / 3)  # pairs on edited figures: VS q0 wrong, VS q1 / VD q0 right


def wm_item(problem, key):
    return EvalItem(f"{problem}/{key}", [], "?", "A", "wemath", "S1", {"problem": problem, "key": key})


def test_wemath_strict_and_loose_four_dimensional_metrics():
    problems = {"2steps_1": [True, True, True], "2steps_2": [True, False, True],
                "2steps_3": [False, False, True], "3steps_1": [True, True, True, False],
                "3steps_2": [False, True, True, False]}
    items, scores = [], []
    for pid, oks in problems.items():
        steps = int(pid[0])
        keys = [f"{steps}steps_{i}" for i in range(1, steps + 1)] + [f"{steps}steps_multi"]
        for key, ok in zip(keys, oks, strict=True):
            items.append(wm_item(pid, key))
            scores.append(float(ok))
    items.append(wm_item("2steps_9", "2steps_1"))  # a partial problem (--limit) is not counted
    scores.append(1.0)
    m = wemath_metrics(items, [""] * len(items), scores)
    assert m["IK"] == pytest.approx(0.2) and m["IG"] == pytest.approx(0.2)
    assert m["strict/CM"] == pytest.approx(0.2) and m["loose/CM"] == pytest.approx(0.4)
    assert m["strict/RM"] == pytest.approx(2 / 3) and m["loose/RM"] == pytest.approx(1 / 3)
    assert m["strict/score"] == pytest.approx(0.3) and m["loose/score"] == pytest.approx(0.5)


def test_composite_rows_average_the_k_samples_and_name_mlflow_metrics():
    items = [EvalItem("1", [], "?", "yes", "pope", "random"),
             EvalItem("2", [], "?", "no", "pope", "random")]
    results = [SimpleNamespace(item=items[0], completions=["Yes", "No"], scores=[1.0, 0.0]),
               SimpleNamespace(item=items[1], completions=["No", "No"], scores=[1.0, 1.0])]
    rows = {r["category"]: r for r in composite_rows("pope", results)}
    assert rows["f1"]["accuracy"] == pytest.approx((1.0 + 0.0) / 2)  # F1 1, then no positive
    assert rows["random/yes_ratio"]["accuracy"] == pytest.approx((0.5 + 0.0) / 2)
    assert rows["f1"]["n"] == 2 and metric_name(rows["random/f1"]) == "pope/random/f1"
    assert composite_rows("mmstar", results) == []  # accuracy is what MMStar reports
    assert BENCHMARKS["hallusionbench"].metrics is hallusionbench_metrics


def test_logicvista_skill_and_capability_table(tmp_path):
    from tests.evaluation.fixtures import logicvista
    from visgrpo.evaluation.benchmarks import load_benchmark

    logicvista(tmp_path)
    items = load_benchmark("logicvista", tmp_path)  # v1_0 v1_1 v1_20 v1_382
    m = logicvista_metrics(items, [""] * 4, [1.0, 0.0, 1.0, 0.0])
    assert m["skill/inductive"] == 1.0 and m["skill/deductive"] == 0.5  # v1_20 lists two skills
    assert m["skill/numerical"] == 1.0 and m["skill/spatial"] == 0.0
    assert "skill/mechanical" not in m  # no such item
    assert m["capability/diagram"] == pytest.approx(1 / 3) and m["capability/ocr"] == 1.0
    assert m["capability/diagram_and_ocr"] == 1.0


def test_mathvista_task_and_skill_breakdown(tmp_path):
    from tests.evaluation.fixtures import mathvista
    from visgrpo.evaluation.benchmarks import load_benchmark
    from visgrpo.evaluation.benchmarks.mathvista import mathvista_metrics

    mathvista(tmp_path)
    items = load_benchmark("mathvista_testmini", tmp_path)  # pid 3 is the word problem
    m = mathvista_metrics(items, [""] * 5, [1.0, 0.0, 1.0, 0.0, 0.0])
    assert m["task/math word problem"] == 1.0 and m["task/figure question answering"] == 0.25
    assert m["skill/arithmetic reasoning"] == 1.0 and m["skill/statistical reasoning"] == 0.4
