"""``visgrpo eval`` end to end on fixtures of all nine benchmarks.

An oracle engine that answers every question with its gold answer (boxes written in the
model family's coordinate convention) must score 1.0 everywhere, and one that answers
wrongly 0.0: this checks loaders, prompts, scorers and the table together. The tiny model
then runs the real HF engine through ``visgrpo.cli.main`` with avg@2, MLflow included.
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest

from tests.evaluation.fixtures import GOLD, build_all
from visgrpo.evaluation.scoring import LETTERS, gold_letters
from visgrpo.rewards.coords import from_original

CLOSED = {"choice", "yesno"}


class Oracle:
    """Answers each prompt from its item (found by id), right or wrong."""

    def __init__(self, right: bool):
        self.right = right
        self.items = {}
        self.calls = []

    def answer(self, item, sample) -> str:
        gold, kind = item.answer, item.scorer
        if kind == "box":
            W, H = item.meta["width"], item.meta["height"]
            box = gold if self.right else [gold[2], gold[3], W, H]
            x = from_original(box, sample["family"], (W, H), sample["resized_hw"][0])
            return '{"bbox_2d": [' + ", ".join(f"{v:.3f}" for v in x) + "]}"
        if kind == "mathvista" and item.meta.get("choices"):
            other = next(c for c in item.meta["choices"] if c != gold)
            return f"<answer>{gold if self.right else other}</answer>"
        if kind == "wemath":
            return f"<Answer>: {gold if self.right else next(c for c in 'ABCDE' if c != gold)}"
        if kind == "logicvista":  # an empty gold answer is matched by an empty response only
            right = f"<answer>{gold}</answer>" if gold else ""
            return right if self.right else "<answer>Z</answer>"
        if kind == "choice":
            letters = sorted(gold_letters(gold))
            if not self.right:
                letters = [next(c for c in LETTERS if c not in letters)]
            if self.right and len(letters) == 1:
                return f"The answer is ({letters[0]})"
            return f"<answer>{', '.join(letters)}</answer>"
        if kind in ("yesno", "pope", "yorn"):
            yes = (gold == "yes") == self.right
            return "Yes." if yes else "No."
        return f"<answer>{gold}</answer>" if self.right else "<answer>987654</answer>"

    def generate(self, model, processor, prompts, sampling, seed=None):
        self.calls.append((len(prompts), sampling.num_generations, sampling.do_sample))
        out = []
        for s in prompts.samples:
            out += [self.answer(self.items[s["id"]], s)] * sampling.num_generations
        return SimpleNamespace(completions=out)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("benchmarks"))


def run_oracle(monkeypatch, tmp_path, data_root, model_dir, right, protocol="greedy"):
    import visgrpo.evaluation.runner as runner
    from visgrpo.evaluation.cli import main

    oracle = Oracle(right)
    original = runner.prompt_batch

    def spy(items, *a, **kw):
        oracle.items.update({it.id: it for it in items})
        return original(items, *a, **kw)

    monkeypatch.setattr(runner, "prompt_batch", spy)
    out = tmp_path / ("right" if right else "wrong")
    rc = main(["--model", model_dir, "--data-root", str(data_root), "--out", str(out),
               "--no-mlflow", "--no-progress", "--batch-size", "2", "--protocol", protocol],
              engine=oracle)
    assert rc == 0
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh)), oracle, out


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_oracle_scores_one_and_wrong_answers_zero(monkeypatch, tmp_path, data_root,
                                                  tiny_model_dirs, family):
    rows, oracle, out = run_oracle(monkeypatch, tmp_path, data_root, tiny_model_dirs[family], True)
    overall = {r["benchmark"]: r for r in rows if r["category"] == "all"}
    assert set(overall) == set(GOLD)
    for name, r in overall.items():
        assert float(r["accuracy"]) == 1.0, name
        assert int(r["n"]) == len(GOLD[name])
    cats = {(r["benchmark"], r["category"]) for r in rows}
    assert ("mathvista_testmini", "float") in cats and ("pope", "adversarial") in cats
    assert all(c == (2, 1, False) or c[0] == 1 for c in oracle.calls)  # greedy, batches of 2
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == sum(len(v) for v in GOLD.values())
    assert "| refcoco | all | 3 | 100.0 |" in (out / "results.md").read_text()

    composite = {(r["benchmark"], r["category"]): float(r["accuracy"]) for r in rows
                 if r["metric"] != "accuracy"}
    assert composite[("hallusionbench", "qAcc")] == 1.0 and composite[("pope", "f1")] == 1.0
    assert composite[("wemath", "strict/score")] == 1.0

    rows, _, _ = run_oracle(monkeypatch, tmp_path, data_root, tiny_model_dirs[family], False)
    assert all(float(r["accuracy"]) == 0.0 for r in rows if r["metric"] == "accuracy")
    composite = {(r["benchmark"], r["category"]): float(r["accuracy"]) for r in rows
                 if r["metric"] != "accuracy"}
    assert composite[("hallusionbench", "aAcc")] == 0.0 and composite[("wemath", "IK")] == 1.0


def test_avg_at_k_samples_k_per_question(monkeypatch, tmp_path, data_root, tiny_model_dirs):
    rows, oracle, _ = run_oracle(monkeypatch, tmp_path, data_root, tiny_model_dirs["qwen2_5_vl"],
                                 True, protocol="avg@k")
    assert {c[1:] for c in oracle.calls} == {(8, True)}
    assert all(float(r["accuracy"]) == 1.0 for r in rows if r["metric"] == "accuracy")


def test_tiny_model_end_to_end_with_mlflow(tmp_path, data_root, tiny_model_dirs, monkeypatch):
    import mlflow

    from visgrpo.cli import main

    monkeypatch.chdir(tmp_path)
    out, uri = tmp_path / "eval", f"sqlite:///{tmp_path / 'mlflow.db'}"
    names = sorted(GOLD)
    args = ["eval", "--model", tiny_model_dirs["qwen2_5_vl"], "--data-root", str(data_root),
            "--benchmarks", *names, "--limit", "2", "--protocol", "avg@2",
            "--max-new-tokens", "6", "--batch-size", "4", "--out", str(out),
            "--tracking-uri", uri, "--run-name", "tiny", "--no-progress"]
    assert main(args) == 0
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    overall = {r["benchmark"]: r for r in rows if r["category"] == "all"}
    assert sorted(overall) == names and all(int(r["n"]) == 2 for r in overall.values())
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert {r["protocol"] for r in rows} == {"avg@2"}
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * len(names) and all(len(p["completions"]) == 2 for p in preds)
    mlflow.set_tracking_uri(uri)
    run = mlflow.search_runs(experiment_names=["visgrpo-eval"], output_format="list")[0]
    metrics = run.data.metrics
    assert set(metrics) == {f"{r['benchmark']}/acc" if r["category"] == "all" else
                            f"{r['benchmark']}/{r['category'].replace(' ', '_')}/acc"
                            if r["metric"] == "accuracy"
                            else f"{r['benchmark']}/{r['metric'].replace(' ', '_')}"
                            for r in rows}
    assert metrics["pope/acc"] == pytest.approx(float(overall["pope"]["accuracy"]))
    assert run.data.params["protocol"] == "avg@2"


def test_bad_input_is_one_line(tmp_path, capsys, tiny_model_dirs):
    from visgrpo.evaluation.cli import main

    assert main(["--model", tiny_model_dirs["qwen2_5_vl"], "--benchmark", "mmlu=/x",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("visgrpo eval: error: --benchmark 'mmlu': unknown") and "\n" not in err
