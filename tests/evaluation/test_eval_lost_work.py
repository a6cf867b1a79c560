"""No lost work (issue 23, item 5), in process.

Every benchmark is loaded and checked
before the first prompt is generated and all problems are listed; a benchmark that fails
is reported while the others complete; its finished batches stay journaled, so the rerun
generates only the rest. (The SIGKILL of a real process: test_eval_kill.py.)
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from tests.evaluation.fixtures import BUILDERS
from visgrpo.evaluation.benchmarks import load_benchmark
from visgrpo.evaluation.cli import main


class Scripted:
    """Answers ``A`` to everything; raises ``RuntimeError`` on the prompts in ``fail_on``."""

    def __init__(self, out, fail_on=()):
        self.out, self.fail_on, self.ids = out, set(fail_on), []
        self.problems_listed_first = None

    def generate(self, model, processor, prompts, sampling, seed=None):
        if self.problems_listed_first is None:
            self.problems_listed_first = (self.out / "problems.txt").exists()
        ids = [s["id"] for s in prompts.samples]
        if self.fail_on & set(ids):
            raise RuntimeError("CUDA out of memory (scripted)")
        self.ids += ids
        return SimpleNamespace(completions=["A"] * len(ids) * sampling.num_generations)


def build(root, names):
    for name in names:
        BUILDERS[name](root / name)
    return root


def ids(root, name, limit=None) -> list[str]:
    """The ids of a fixture benchmark, in order (whatever the fixture holds)."""
    return [it.id for it in load_benchmark(name, root / name, limit)]


def eval_args(model, root, out, names):
    return ["--model", model, "--data-root", str(root), "--benchmarks", *names, "--out", str(out),
            "--no-mlflow", "--no-progress", "--batch-size", "1", "--max-new-tokens", "4"]


def break_mmstar(folder):
    """Two bad records: a gold answer that is no option letter, and an image that is not one."""
    path = folder / "mmstar.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["answer"] = "3"
    rows[1]["image"] = {"bytes": b"not a png", "path": None}
    pq.write_table(pq.read_table(path).from_pylist(rows, schema=pq.read_schema(path)), path)


def test_all_problems_are_listed_before_generation_and_the_rest_completes(
        tmp_path, tiny_model_dirs, capsys):
    names = ["pope", "mmstar", "hallusionbench", "mathvista_testmini"]
    root = build(tmp_path / "data", names)
    break_mmstar(root / "mmstar")
    for f in (root / "hallusionbench").rglob("*.parquet"):
        f.unlink()  # nothing readable left
    out = tmp_path / "out"
    engine = Scripted(out)
    assert main(eval_args(tiny_model_dirs["qwen2_5_vl"], root, out, names), engine=engine) == 1
    err = capsys.readouterr().err
    listed = (out / "problems.txt").read_text().splitlines()
    assert len(listed) == 3 and all(line in err for line in listed)
    assert listed[0].startswith("mmstar: record '0': answer '3' is not an option letter")
    assert listed[1].startswith("mmstar: record '1': field 'image': its bytes are not an image")
    assert listed[2].startswith("hallusionbench: ") and "no parquet" in listed[2]
    assert engine.problems_listed_first  # listed before the first prompt was generated
    assert engine.ids == ids(root, "pope") + ids(root, "mathvista_testmini")  # mmstar never
    with open(out / "results.csv") as fh:
        done = {r["benchmark"] for r in csv.DictReader(fh) if r["category"] == "all"}
    assert done == {"pope", "mathvista_testmini"}
    md = (out / "results.md").read_text()
    assert "Failed (2)" in md and "- mmstar: 2 problem(s) before generation" in md
    assert set(json.loads((out / "failures.json").read_text())) == {"mmstar", "hallusionbench"}
    assert "2 benchmark(s) failed: mmstar, hallusionbench" in err

    check = Scripted(out)
    assert main([*eval_args(tiny_model_dirs["qwen2_5_vl"], root, out, names), "--check"],
                engine=check) == 1
    n = len(ids(root, "pope")) + len(ids(root, "mathvista_testmini"))
    assert f"2 ready ({n} items), 2 with problems" in capsys.readouterr().out and check.ids == []
    (out / "problems.txt").unlink()
    assert main([*eval_args(tiny_model_dirs["qwen2_5_vl"], root, out, ["pope"]), "--check"]) == 0
    assert not (out / "problems.txt").exists()


def test_a_failing_benchmark_is_isolated_and_its_finished_batches_resume(tmp_path, tiny_model_dirs,
                                                                          capsys):
    names = ["pope", "mmstar"]
    root = build(tmp_path / "data", names)
    out = tmp_path / "out"
    args = eval_args(tiny_model_dirs["qwen2_5_vl"], root, out, names)
    pope, mmstar = ids(root, "pope"), ids(root, "mmstar")
    first = Scripted(out, fail_on={pope[1]})  # pope's second question
    assert main(args, engine=first) == 1
    assert first.ids == [pope[0], *mmstar]  # pope's first, then its second failed; all of mmstar
    md = (out / "results.md").read_text()
    assert f"| mmstar | all | {len(mmstar)} |" in md and "- pope: CUDA out of memory (scripted)" in md
    trace = (out / "errors" / "pope.rank0.txt").read_text()
    assert "RuntimeError: CUDA out of memory" in trace
    assert "error: 1 benchmark(s) failed: pope" in capsys.readouterr().err

    again = Scripted(out)
    assert main(args, engine=again) == 0
    assert again.ids == pope[1:]  # only what was not journaled
    with open(out / "results.csv") as fh:
        overall = {r["benchmark"]: r for r in csv.DictReader(fh) if r["category"] == "all"}
    assert {k: int(v["n"]) for k, v in overall.items()} == {"pope": len(pope), "mmstar": len(mmstar)}
    assert not (out / "failures.json").exists()

    restarted = Scripted(out)
    assert main([*args, "--restart"], engine=restarted) == 0
    assert restarted.ids == pope + mmstar


@pytest.mark.parametrize("change", [("--max-new-tokens", "5"), ("--protocol", "avg@2")])
def test_predictions_of_another_configuration_are_refused(tmp_path, tiny_model_dirs, capsys, change):
    root = build(tmp_path / "data", ["pope"])
    out = tmp_path / "out"
    args = eval_args(tiny_model_dirs["qwen2_5_vl"], root, out, ["pope"])
    assert main(args, engine=Scripted(out)) == 0
    engine = Scripted(out)
    assert main([*args, *change], engine=engine) == 1
    assert engine.ids == []
    err = capsys.readouterr().err
    assert "predictions of another run" in err and "--restart" in err


def test_a_longer_limit_reuses_the_batches_already_generated(tmp_path, tiny_model_dirs):
    root = build(tmp_path / "data", ["mathvista_testmini"])
    out = tmp_path / "out"
    args = eval_args(tiny_model_dirs["qwen2_5_vl"], root, out, ["mathvista_testmini"])
    args[args.index("--batch-size") + 1] = "2"
    every = ids(root, "mathvista_testmini")
    assert len(every) >= 3
    first = Scripted(out)
    assert main([*args, "--limit", "2"], engine=first) == 0
    assert first.ids == every[:2]
    more = Scripted(out)
    assert main(args, engine=more) == 0
    assert more.ids == every[2:]  # batch 0 (the first two items) reused
    fewer = Scripted(out)
    assert main([*args, "--limit", "1"], engine=fewer) == 0
    assert fewer.ids == every[:1]  # batch 0 is now the first item alone: generated again
