"""Paper suites: definitions point at registered benchmarks, the table reads the right rows
in the paper's column order, and ``visgrpo eval --suite`` runs and prints it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.evaluation import breadth_fixtures as fx
from visgrpo.evaluation.benchmarks import BENCHMARKS
from visgrpo.evaluation.scoring import gold_letters
from visgrpo.evaluation.suites import SUITES, Column, Suite, column_value, suite_table


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suites_name_registered_benchmarks(name):
    suite = SUITES[name]
    assert suite.benchmarks and suite.source and suite.protocol
    for column in suite.columns:
        assert column.benchmark is None or column.benchmark in BENCHMARKS, column
        assert column.benchmark or column.note, f"{column.label}: unreproducible without a note"


def test_papers_columns_in_order():
    assert [c.label for c in SUITES["papo"].columns] == [
        "Geo3K", "MathVista", "We-Math", "MMK12", "MathVerse", "LogicVista", "SuperClevr",
        "MMMU-Pro", "MathVerse_V"]
    assert SUITES["vppo"].benchmarks == ["geometry3k", "wemath", "mmk12", "mathverse_testmini",
                                         "mathvision", "dynamath", "logicvista", "mmmu_pro"]


ROWS = [
    {"benchmark": "mathvista_testmini", "category": "all", "n": 10, "accuracy": 0.5},
    {"benchmark": "mathvista_testmini", "category": "multi_choice", "n": 6, "accuracy": 0.5},
    {"benchmark": "mathvista_testmini", "category": "integer", "n": 4, "accuracy": 0.5},
    {"benchmark": "mathverse_testmini", "category": "all", "n": 30, "accuracy": 0.4},
    {"benchmark": "mathverse_testmini", "category": "Vision Dominant", "n": 10, "accuracy": 0.3},
    {"benchmark": "mathverse_testmini", "category": "Vision Only", "n": 30, "accuracy": 0.7},
    {"benchmark": "mmmu_pro", "category": "all", "n": 4, "accuracy": 0.25},
    {"benchmark": "mmmu_pro", "category": "overall", "n": 4, "accuracy": 0.375,
     "metric": "overall"},
    {"benchmark": "geometry3k", "category": "all", "n": 5, "accuracy": 0.8},
]


def test_column_values_by_hand():
    assert column_value(Column("x", "geometry3k"), ROWS) == 0.8
    # item-weighted pool: (10 * 0.3 + 30 * 0.7) / 40
    assert column_value(Column("x", "mathverse_testmini",
                               categories=("Vision Dominant", "Vision Only")), ROWS) == pytest.approx(0.6)
    assert column_value(Column("x", "mmmu_pro", metric="overall"), ROWS) == 0.375
    assert column_value(Column("x", "logicvista"), ROWS) is None
    assert column_value(Column("x"), ROWS) is None


def test_papo_table_prints_the_papers_columns():
    table = suite_table(SUITES["papo"], ROWS, "avg@8")
    header, _, cells = table.splitlines()[2:5]
    labels = [h.split(" [")[0] for h in header.strip("| ").split(" | ")]
    assert labels == [c.label for c in SUITES["papo"].columns] + ["Avg (5/9)"]
    # Geo3K 80, MathVista MC 50, We-Math n/a, MMK12 n/a, MathVerse 40, LogicVista n/a,
    # SuperClevr n/a, MMMU-Pro 37.5, MathVerse_V 60; Avg = (80+50+40+37.5+60)/5
    assert cells.strip("| ").split(" | ") == [
        "80.0", "50.0", "n/a", "n/a", "40.0", "n/a", "n/a", "37.5", "60.0", "53.5"]
    assert "wemath was not evaluated in this run" in table
    assert "mmk12 was not evaluated in this run" in table
    assert "Columns from: MikeWangWZHL/PAPO README" in table


def test_missing_metric_says_so():
    suite = Suite("t", "T", "src", "greedy", (Column("MMMU-Pro", "mmmu_pro", metric="nope"),))
    assert "mmmu_pro's nope not in this run's results" in suite_table(suite, ROWS, "greedy")


class Oracle:
    """Answers each item with its gold answer in the form its scorer reads."""

    def __init__(self):
        self.items = {}

    def answer(self, item) -> str:
        gold = item.answer
        if item.scorer in ("mmmu", "mmmu_pro"):
            return f"Answer: {gold[0] if isinstance(gold, list) else gold}"
        if item.scorer == "mathvision":
            return f"\\boxed{{{gold}}}"
        if item.scorer == "dynamath":
            return json.dumps({"solution": "...", "short answer": gold})
        if item.scorer == "choice":
            return f"The answer is ({sorted(gold_letters(gold))[0]})"
        return f"<answer>{gold}</answer>"

    def generate(self, model, processor, prompts, sampling, seed=None):
        out = []
        for s in prompts.samples:
            out += [self.answer(self.items[s["id"]])] * sampling.num_generations
        return SimpleNamespace(completions=out)


@pytest.mark.slow
def test_eval_suite_end_to_end(monkeypatch, tmp_path, tiny_model_dirs, capsys):
    import visgrpo.evaluation.runner as runner
    from visgrpo.evaluation.cli import main

    root = tmp_path / "data"
    for name in ("mathvision", "dynamath", "mmmu_pro"):
        fx.BUILDERS[name](root / name)
    (root / "mmmu").mkdir()  # not in the suite: must not run
    oracle, original = Oracle(), runner.prompt_batch

    def spy(items, *a, **kw):
        oracle.items.update({it.id: it for it in items})
        return original(items, *a, **kw)

    monkeypatch.setattr(runner, "prompt_batch", spy)
    out = tmp_path / "out"
    rc = main(["--model", tiny_model_dirs["qwen2_5_vl"], "--data-root", str(root), "--suite",
               "vppo", "--out", str(out), "--no-mlflow", "--no-progress", "--batch-size", "4"],
              engine=oracle)
    assert rc == 0
    printed = capsys.readouterr().out
    table = (out / "suite_vppo.md").read_text()
    assert table in printed
    header, _, cells = table.splitlines()[2:5]
    labels = [h.split(" [")[0] for h in header.strip("| ").split(" | ")]
    values = dict(zip(labels, cells.strip("| ").split(" | "), strict=True))
    assert values["MathVision"] == "100.0" and values["DynaMath"] == "100.0"
    assert values["Geo3k"] == "n/a" and values["MMK12"] == "n/a"
    assert "| mmmu |" not in printed  # only the suite's benchmarks ran
    assert set(oracle.items) == {i.id for n in ("mathvision", "dynamath", "mmmu_pro")
                                 for i in BENCHMARKS[n](root / n)}


def test_suite_without_data_root_is_one_line(tmp_path, capsys):
    from visgrpo.evaluation.cli import main

    # checked before any model is loaded
    assert main(["--model", str(tmp_path / "no-model"), "--suite", "papo",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("visgrpo eval: error: --suite papo: needs --data-root") and "\n" not in err
