r"""``visgrpo eval``: a model on standard benchmarks read from local copies.

Example::

    visgrpo eval --model runs/exp/export --data-root benchmarks/ \
        --benchmarks mathvista_testmini mmstar pope --protocol greedy --out runs/exp/eval
    visgrpo eval --model runs/exp/checkpoints/last.ckpt \
        --benchmark refcoco=/data/RefCOCO --protocol avg@k --k 8 --out eval/
    torchrun --nproc_per_node 8 -m visgrpo.cli eval --model ... --out eval/   # 8 ranks

``--data-root`` holds one folder per benchmark, named as the benchmark; ``--benchmark
NAME=PATH`` points to one. Nothing is downloaded. Every benchmark is loaded and checked
before any generation (``--check`` stops there); one with problems is listed and skipped
while the others run, and the command exits 1 naming it. Predictions are journaled per
batch under ``OUT/progress/``: rerun the same command after a kill and it resumes.
Results: ``OUT/results.md``, ``OUT/results.csv``, ``OUT/predictions.jsonl`` and an MLflow
run (``--tracking-uri``, default ``sqlite:///mlflow.db`` as for training).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from visgrpo.data.geometry import processor_geometry
from visgrpo.evaluation.benchmarks import BENCHMARKS, composite_rows
from visgrpo.evaluation.judge import Judge, JudgeConfig, judge_results, judged
from visgrpo.evaluation.loading import load_for_eval
from visgrpo.evaluation.progress import Journal, assemble, model_fingerprint
from visgrpo.evaluation.ranks import Ranks, device_for, n_batches
from visgrpo.evaluation.report import log_mlflow, write_atomic, write_outputs
from visgrpo.evaluation.runner import Protocol, generate_batches, score_items, summarize
from visgrpo.evaluation.suites import SUITES, get_suite, suite_benchmarks, suite_table
from visgrpo.evaluation.validate import load_all, problems_text
from visgrpo.rollout import build_rollout_engine
from visgrpo.rollout.prompts import DEFAULT_PROMPT_TEMPLATE

# What makes one benchmark fail while the others go on: bad data (ValueError, OSError),
# the engine or the judge (RuntimeError, CUDA out-of-memory included). Its batches so far
# stay journaled. Anything else is a bug and stops the run with its traceback.
BENCHMARK_ERRORS = (ValueError, OSError, KeyError, RuntimeError)
MAX_PRINTED_PROBLEMS = 20  # per benchmark on the terminal; OUT/problems.txt has them all


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
                        "table's columns (docs/evaluation.md)")
    p.add_argument("--protocol", default="greedy", help="greedy | avg@k | avg@<k> (default greedy)")
    p.add_argument("--k", type=int, default=8, help="samples per question for avg@k (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8,
                   help="prompts per generate call; also the unit of resuming and of sharding over ranks")
    p.add_argument("--limit", type=int, default=None, help="first N questions per benchmark")
    p.add_argument("--prompt-template", default=DEFAULT_PROMPT_TEMPLATE,
                   help="str.format template with {question} (default: the training template)")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--device", default="auto",
                   help="hf engine: auto (cuda:LOCAL_RANK when there is CUDA, else cpu), cpu, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder for the tables and predictions")
    p.add_argument("--check", action="store_true",
                   help="load and check every benchmark, list the problems, generate nothing")
    p.add_argument("--restart", action="store_true",
                   help="discard the journaled predictions under OUT/progress instead of resuming")
    j = p.add_argument_group("judge (optional; rule-based extraction is the default)")
    j.add_argument("--judge", default=None, metavar="URL",
                   help="OpenAI-compatible API base URL (e.g. http://localhost:8000/v1): extract "
                        "MathVista / MathVerse answers with the official judge prompts")
    j.add_argument("--judge-model", default=None, help="the judge's model name (needed with --judge)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key (default OPENAI_API_KEY)")
    j.add_argument("--judge-workers", type=int, default=8, help="judge requests in flight")
    j.add_argument("--judge-retries", type=int, default=5, help="attempts per judge request")
    j.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per judge request")
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


def judge_config(args) -> JudgeConfig | None:
    """The judge of ``--judge`` (its options checked before anything loads)."""
    if args.judge is None:
        return None
    if not args.judge.startswith(("http://", "https://")):
        raise ValueError(f"--judge {args.judge!r}: expected an http(s):// base URL")
    if not args.judge_model:
        raise ValueError("--judge needs --judge-model (the model name the endpoint serves)")
    if args.judge_workers < 1 or args.judge_retries < 1:
        raise ValueError("--judge-workers and --judge-retries must be >= 1")
    return JudgeConfig(args.judge, args.judge_model, args.judge_api_key_env or None,
                       args.judge_timeout, args.judge_retries, args.judge_workers)


def make_engine(args, model, processor, kind: str):
    """The rollout engine; vLLM loads ``--model`` itself (a merged export for adapters and
    checkpoints, so it samples from the same weights).
    """
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


def run_header(args, protocol: Protocol) -> dict:
    """What makes journaled predictions reusable: the same model files and generation."""
    return {"model": str(args.model), "model_files": model_fingerprint(args.model),
            "base_model": args.base_model, "protocol": protocol.name,
            "max_new_tokens": args.max_new_tokens, "template": args.prompt_template,
            "system_prompt": args.system_prompt, "seed": args.seed,
            "batch_size": args.batch_size, "engine": args.engine, "dtype": args.dtype}


def one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _isolated(failures: dict, name: str, err: BaseException, out: Path, rank: int) -> None:
    """Record a benchmark's failure; its traceback goes to ``OUT/errors/``."""
    path = out / "errors" / f"{name}.rank{rank}.txt"
    write_atomic(path, "".join(traceback.format_exception(err)))
    failures[name] = f"{one_line(err)} (traceback: {path})"


def run(args, engine=None) -> tuple[list[dict], dict[str, str]]:
    """Evaluate; return the table rows and ``{benchmark: why}`` of those that failed."""
    ranks = Ranks.from_env()
    protocol = Protocol.parse(args.protocol, args.k)
    if args.suite:
        args.benchmarks = suite_benchmarks(args.suite, args.data_root)
    judge_cfg = judge_config(args)
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if args.engine == "vllm" and ranks.world > 1:
        raise ValueError("--engine vllm runs in one process (vLLM spreads a model over GPUs "
                         "itself); launch it without torchrun")
    out = Path(args.out)
    paths = benchmark_paths(args)
    loaded = load_all(paths, args.limit)  # 1. every benchmark loaded and checked first
    header = run_header(args, protocol)
    journals = {name: Journal(out / "progress" / name, {**header, "benchmark": name}, ranks.rank)
                for name in loaded.suites}
    ranks.start()
    try:
        if args.restart and ranks.main:
            for journal in journals.values():
                journal.clear()
        ranks.barrier()
        for name, journal in journals.items():
            try:
                journal.check()
            except ValueError as err:
                loaded.problems[name] = [one_line(err)]
                del loaded.suites[name]
        if loaded.problems and ranks.main:
            n = sum(len(v) for v in loaded.problems.values())
            print(f"visgrpo eval: {n} problem(s) in {len(loaded.problems)} benchmark(s), found before "
                  f"generation (all in {out / 'problems.txt'}):\n"
                  + problems_text(loaded.problems, MAX_PRINTED_PROBLEMS), end="", file=sys.stderr)
            write_atomic(out / "problems.txt", problems_text(loaded.problems))
        elif ranks.main:
            (out / "problems.txt").unlink(missing_ok=True)  # a fixed problem is not listed again
        failures = {name: f"{len(found)} problem(s) before generation, the first: {found[0]}"
                    for name, found in loaded.problems.items()}
        if args.check:
            if ranks.main:
                print(f"visgrpo eval: checked {len(paths)} benchmark(s): {len(loaded.suites)} ready "
                      f"({sum(map(len, loaded.suites.values()))} items), {len(failures)} with problems")
            return [], failures
        model_info: dict = {}
        if loaded.suites:  # 2. generation, each rank its batches, journaled as they finish
            failures.update(_generate(args, loaded.suites, journals, protocol, ranks, engine, out,
                                      model_info))
        for other in ranks.gather(failures):
            failures.update({k: v for k, v in other.items() if k not in failures})
        rows: list[dict] = []
        if ranks.main:  # 3. merge in batch order, score, judge, write
            rows = _finish(args, loaded.suites, journals, protocol, failures, judge_cfg, out, ranks,
                           order=list(paths), params=model_info)
        ranks.barrier()
    finally:
        ranks.stop()
    return rows, {name: failures[name] for name in paths if name in failures}


def _generate(args, suites, journals, protocol, ranks: Ranks, engine, out: Path,
              model_info: dict) -> dict[str, str]:
    model, processor, kind = load_for_eval(args.model, args.base_model, args.dtype)
    if args.engine == "hf":
        model.to(device_for(ranks, args.device))
    engine = engine or make_engine(args, model, processor, kind)
    geometry = processor_geometry(processor)
    model_info.update(model_kind=kind, family=geometry.family)
    failures: dict[str, str] = {}
    for name, items in suites.items():
        journal = journals[name]
        try:
            done = journal.done(items, args.batch_size)
            todo = [b for b in ranks.batches(n_batches(len(items), args.batch_size)) if b not in done]
            generate_batches(
                items, todo, model, processor, engine, geometry, protocol, journal.record,
                template=args.prompt_template, system_prompt=args.system_prompt,
                batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, seed=args.seed,
                desc=name, progress=not args.no_progress and ranks.main,
            )
        except BENCHMARK_ERRORS as err:
            _isolated(failures, name, err, out, ranks.rank)
    return failures


def _finish(args, suites, journals, protocol, failures, judge_cfg, out: Path, ranks,
            order: list[str], params: dict) -> list[dict]:
    judge = Judge(judge_cfg, out / "judge" / "cache.jsonl") if judge_cfg else None
    rows, predictions = [], {}
    for name, items in suites.items():
        if name in failures:
            continue
        try:
            done = journals[name].done(items, args.batch_size)
            results = score_items(items, assemble(items, done, args.batch_size))
            extraction = "rules"
            if judge is not None and judged(name):
                judge_results(name, results, judge, progress=not args.no_progress)
                extraction = judge_cfg.describe()
        except BENCHMARK_ERRORS as err:
            _isolated(failures, name, err, out, ranks.rank)
            continue
        predictions[name] = results
        for row in [*summarize(name, results), *composite_rows(name, results)]:
            rows.append({**row, "extraction": extraction})
    ordered = {name: failures[name] for name in order if name in failures}
    files = write_outputs(out, rows, predictions, protocol.name, ordered)
    if not args.no_mlflow:
        params = {**params, "model": args.model, "protocol": protocol.name,
                  "max_new_tokens": args.max_new_tokens,
                  "engine": args.engine, "benchmarks": ",".join(predictions), "ranks": ranks.world,
                  "extraction": judge_cfg.describe() if judge_cfg else "rules",
                  "failed": ",".join(ordered) or "none"}
        if judge_cfg:
            params["judge_url"] = judge_cfg.url
        log_mlflow(rows, params, args.tracking_uri, args.experiment, args.run_name, files)
    print((out / "results.md").read_text(), end="")
    if args.suite:
        table = suite_table(get_suite(args.suite), rows, protocol.name)
        write_atomic(out / f"suite_{args.suite}.md", table)
        print("\n" + table, end="")
    return rows


def main(argv: list[str] | None = None, engine=None) -> int:
    """Entry of ``visgrpo eval``; bad input prints one line and returns 1, and so does a
    run in which some benchmark failed (after the others were written).
    """
    args = build_parser().parse_args(argv)
    try:
        _, failures = run(args, engine)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"visgrpo eval: error: {one_line(err)}", file=sys.stderr)
        return 1
    if failures and Ranks.from_env().main:
        where = "problems.txt" if args.check else "results.md"
        print(f"visgrpo eval: error: {len(failures)} benchmark(s) failed: {', '.join(failures)} "
              f"(reasons in {Path(args.out) / where})", file=sys.stderr)
    return 1 if failures else 0
