"""``visgrpo eval``: a model on standard benchmarks read from local copies.

Example::

    visgrpo eval --model runs/exp/export --data-root benchmarks/ \\
        --benchmarks mathvista_testmini mmstar pope --protocol greedy --out runs/exp/eval
    visgrpo eval --model runs/exp/checkpoints/last.ckpt \\
        --benchmark refcoco=/data/RefCOCO --protocol avg@k --k 8 --out eval/

``--data-root`` holds one folder per benchmark, named as the benchmark; ``--benchmark
NAME=PATH`` points to one. Nothing is downloaded. Results: ``OUT/results.md``,
``OUT/results.csv``, ``OUT/predictions.jsonl`` and an MLflow run (``--tracking-uri``,
default ``sqlite:///mlflow.db`` as for training).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visgrpo.data.geometry import processor_geometry
from visgrpo.evaluation.benchmarks import BENCHMARKS, composite_rows, load_benchmark
from visgrpo.evaluation.loading import load_for_eval
from visgrpo.evaluation.report import log_mlflow, write_atomic, write_outputs
from visgrpo.evaluation.runner import Protocol, evaluate_items, summarize
from visgrpo.evaluation.suites import SUITES, get_suite, suite_benchmarks, suite_table
from visgrpo.rollout import build_rollout_engine
from visgrpo.rollout.prompts import DEFAULT_PROMPT_TEMPLATE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visgrpo eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True,
                   help="model directory, LoRA adapter directory, or visgrpo .ckpt file")
    p.add_argument("--base-model", default=None,
                   help="base model of an adapter / checkpoint (default: the one it names)")
    p.add_argument("--benchmark", action="append", default=[], metavar="NAME=PATH",
                   help=f"a benchmark and its local folder (repeatable); names: {', '.join(BENCHMARKS)}")
    p.add_argument("--data-root", default=None, help="folder with one sub-folder per benchmark")
    p.add_argument("--benchmarks", nargs="+", default=None,
                   help="with --data-root: which ones (default: every sub-folder named as one)")
    p.add_argument("--suite", choices=sorted(SUITES), default=None,
                   help="with --data-root: run the benchmarks a paper reports and print its "
                        "table's columns (docs/evaluation_benchmarks_new.md)")
    p.add_argument("--protocol", default="greedy", help="greedy | avg@k | avg@<k> (default greedy)")
    p.add_argument("--k", type=int, default=8, help="samples per question for avg@k (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    p.add_argument("--limit", type=int, default=None, help="first N questions per benchmark")
    p.add_argument("--prompt-template", default=DEFAULT_PROMPT_TEMPLATE,
                   help="str.format template with {question} (default: the training template)")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder for the tables and predictions")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="visgrpo-eval")
    p.add_argument("--run-name", default=None)
    p.add_argument("--no-mlflow", action="store_true", help="write the tables only")
    p.add_argument("--no-progress", action="store_true")
    return p


def benchmark_paths(args) -> dict[str, Path]:
    """``{name: folder}`` from ``--benchmark`` and ``--data-root``."""
    chosen: dict[str, Path] = {}
    for spec in args.benchmark:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--benchmark {spec!r}: expected NAME=PATH")
        if name not in BENCHMARKS:
            raise ValueError(f"--benchmark {name!r}: unknown; valid: {', '.join(BENCHMARKS)}")
        chosen[name] = Path(path)
    if args.data_root:
        root = Path(args.data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"--data-root {root}: no such folder")
        names = args.benchmarks or [n for n in BENCHMARKS if (root / n).exists()]
        for name in names:
            if name not in BENCHMARKS:
                raise ValueError(f"--benchmarks {name!r}: unknown; valid: {', '.join(BENCHMARKS)}")
            if not (root / name).exists():
                raise FileNotFoundError(f"--data-root {root}: no folder {name}/")
            chosen.setdefault(name, root / name)
    if not chosen:
        raise ValueError("no benchmark: pass --benchmark NAME=PATH or --data-root")
    return chosen


def make_engine(args, model, processor, kind: str):
    """The rollout engine; vLLM loads ``--model`` itself (a merged export for adapters and
    checkpoints, so it samples from the same weights)."""
    if args.engine == "hf":
        return build_rollout_engine("hf")
    path = args.model
    if kind != "hf":
        import tempfile

        path = tempfile.mkdtemp(prefix="visgrpo-eval-merged-")
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return build_rollout_engine("vllm", model_path=path, sync_weights=False,
                                dtype=args.dtype, max_images_per_prompt=4)


def run(args, engine=None) -> list[dict]:
    """Evaluate; return the table rows."""

    protocol = Protocol.parse(args.protocol, args.k)
    if args.suite:
        args.benchmarks = suite_benchmarks(args.suite, args.data_root)
    paths = benchmark_paths(args)
    suites = {name: load_benchmark(name, path, args.limit) for name, path in paths.items()}
    model, processor, kind = load_for_eval(args.model, args.base_model, args.dtype)
    engine = engine or make_engine(args, model, processor, kind)
    geometry = processor_geometry(processor)
    rows, predictions = [], {}
    for name, items in suites.items():
        results = evaluate_items(
            items, model, processor, engine, geometry, protocol,
            template=args.prompt_template, system_prompt=args.system_prompt,
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, seed=args.seed,
            desc=name, progress=not args.no_progress,
        )
        predictions[name] = results
        rows.extend(summarize(name, results))
        rows.extend(composite_rows(name, results))
    files = write_outputs(Path(args.out), rows, predictions, protocol.name)
    if not args.no_mlflow:
        params = {"model": args.model, "model_kind": kind, "protocol": protocol.name,
                  "max_new_tokens": args.max_new_tokens, "engine": args.engine,
                  "family": geometry.family, "benchmarks": ",".join(suites)}
        log_mlflow(rows, params, args.tracking_uri, args.experiment, args.run_name, files)
    print(Path(args.out, "results.md").read_text(), end="")
    if args.suite:
        table = suite_table(get_suite(args.suite), rows, protocol.name)
        write_atomic(Path(args.out, f"suite_{args.suite}.md"), table)
        print("\n" + table, end="")
    return rows


def main(argv: list[str] | None = None, engine=None) -> int:
    """Entry of ``visgrpo eval``; bad input prints one line and returns 1."""
    args = build_parser().parse_args(argv)
    try:
        run(args, engine)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"visgrpo eval: error: {err}", file=sys.stderr)
        return 1
    return 0
