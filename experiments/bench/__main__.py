"""``python -m experiments.bench [--quick]``: visgrpo vs TRL, credit overhead, micro-benchmarks.

Writes runs/bench/results.json and results.md, or ``--out PATH`` (committed results under
experiments/bench/results/ change only when named; see experiments/bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from experiments.bench.harness import (
    ROOT,
    RunSpec,
    credit_methods,
    loadavg,
    machine_info,
    overhead_target,
    prepare_assets,
    run_worker,
    summarise,
    worker_env,
)
from experiments.bench.worker import worker_main

HERE = Path(__file__).resolve().parent
CREDITS = credit_methods()
TRL_TARGET = 1.2  # visgrpo's throughput over TRL's
# Helpers' standalone scripts: (file, quick args, full args). Missing files are reported as such.
MICRO = (
    ("logprob_memory.py", ["--rows", "1024", "--vocab", "16384"], []),
    ("probe_memory_bench.py", ["--quick"], []),
    ("credit_vs_loop_bench.py", ["--quick"], []),
    ("credit_overhead_bench.py", ["--quick"], []),
    ("data_masks_bench.py", ["--quick"], []),
    ("data_convert_bench.py", ["--quick"], []),
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="~1-2 minutes: fewer repeats and steps")
    p.add_argument("--repeats", type=int, help="alternating visgrpo/TRL runs per configuration")
    p.add_argument("--steps", type=int, help="measured optimiser steps per run (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps per run")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="responses per prompt (G)")
    p.add_argument("--max-completion", type=int, default=32, help="max new tokens per response")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--credit", default=",".join(CREDITS), help="credit methods ('' = none)")
    p.add_argument("--model", help="model directory or hub id (default: build the tiny Qwen2.5-VL)")
    p.add_argument("--data", help="evidence dataset directory (default: synthetic)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--vllm", action="store_true", help="vLLM rollouts on both sides (CUDA)")
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--skip-micro", action="store_true")
    p.add_argument("--workdir", help="where the tiny model and data are built (default: a temp dir)")
    p.add_argument("--out", default="runs/bench/results.json",
                   help="JSON results (and the .md beside it); default under runs/, so the committed "
                   "experiments/bench/results/ changes only when named explicitly")
    p.add_argument("--from-json", help="re-derive summaries, ratios and markdown from the runs of a "
                   "results.json (no measurement); writes --out")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.repeats = a.repeats or (2 if a.quick else 5)
    a.steps = a.steps or (2 if a.quick else 4)
    a.credit = [c for c in a.credit.split(",") if c]
    return a


def throughput_runs(base: RunSpec, a, log) -> dict[str, list[dict]]:
    """Alternating fresh-process runs: each round runs visgrpo and TRL (order flipped every
    round) and every credit configuration (in the quick mode on round 0 only).
    """
    runs: dict[str, list[dict]] = {}
    for r in range(a.repeats):
        pair = [replace(base, side="visgrpo"), replace(base, side="trl")]
        if a.skip_trl:
            pair = pair[:1]
        order = pair if r % 2 == 0 else pair[::-1]
        if not a.quick or r == 0:  # credit order rotates every round (no position bias)
            k = r % max(len(a.credit), 1)
            order += [replace(base, side="visgrpo", credit=[c]) for c in a.credit[k:] + a.credit[:k]]
        for spec in order:
            res = run_worker(spec)
            runs.setdefault(spec.label, []).append(res)
            msg = res.get("error", "").splitlines()[-1:] if "error" in res else None
            log(f"  round {r} {spec.label:<22} "
                + (f"FAILED {msg}" if msg else
                   f"CPU {res['median_cpu_step_s']:.3f} s/step, wall {res['median_step_s']:.3f} s/step  "
                   f"{res['samples_per_cpu_s']:.1f} samples/CPU-s  peak RSS {res['peak_rss_mb']:.0f} MB  "
                   f"load {(res.get('loadavg_end') or ['-'])[0]}"))
    return runs


def paired_ratio(num: list[dict], den: list[dict], key: str = "median_cpu_step_s") -> float | None:
    """Median over rounds of num/den median step time ``key`` (rounds where both ran)."""
    pairs = [(n[key], d[key]) for n, d in zip(num, den, strict=False)
             if "error" not in n and "error" not in d]
    return statistics.median(x / y for x, y in pairs) if pairs else None


def _best(runs: list[dict], key: str, pick=min) -> float | None:
    vals = [r[key] for r in runs if "error" not in r]
    return pick(vals) if vals else None


def comparisons(runs: dict[str, list[dict]], summary: dict, credits: list[str]) -> dict:
    """Ratios vs the targets. The ratio that is checked (``throughput_ratio`` /
    ``step_time_ratio``, ``paired_ratio``) is on process CPU time; the same ratios on wall
    time are kept beside them (``wall_*``), and ``best_*`` compares each configuration's
    best run (fastest median CPU step): on this shared box a whole run sometimes lands in a
    slow phase (the same step then takes ~1.6x the CPU time), which shifts a median of five
    runs but not the best one.
    """
    out: dict = {}
    vis, trl = summary.get("visgrpo_dapo", {}), summary.get("trl_grpo", {})
    if "samples_per_cpu_s" in vis and "samples_per_cpu_s" in trl:
        ratio = vis["samples_per_cpu_s"] / trl["samples_per_cpu_s"]
        out["visgrpo_over_trl"] = {
            "basis": "process CPU time",
            "throughput_ratio": ratio,
            "tokens_ratio": vis["tokens_per_cpu_s"] / trl["tokens_per_cpu_s"],
            "paired_ratio": paired_ratio(runs["trl_grpo"], runs["visgrpo_dapo"]),
            "wall_throughput_ratio": vis["samples_per_s"] / trl["samples_per_s"],
            "wall_tokens_ratio": vis["tokens_per_s"] / trl["tokens_per_s"],
            "wall_paired_ratio": paired_ratio(runs["trl_grpo"], runs["visgrpo_dapo"], "median_step_s"),
            "best_throughput_ratio": _best(runs["visgrpo_dapo"], "samples_per_cpu_s", max)
            / _best(runs["trl_grpo"], "samples_per_cpu_s", max),
            "target": TRL_TARGET,
            "meets_target": ratio >= TRL_TARGET,
        }
    for c in credits:
        cs = summary.get(f"visgrpo_dapo+{c}", {})
        if "median_cpu_step_s" in cs and "median_cpu_step_s" in vis:
            ratio = cs["median_cpu_step_s"] / vis["median_cpu_step_s"]
            label = f"visgrpo_dapo+{c}"
            out[c] = {
                "basis": "process CPU time",
                "step_time_ratio": ratio,
                "paired_ratio": paired_ratio(runs[label], runs["visgrpo_dapo"]),
                "wall_step_time_ratio": cs["median_step_s"] / vis["median_step_s"],
                "wall_paired_ratio": paired_ratio(runs[label], runs["visgrpo_dapo"], "median_step_s"),
                "best_step_time_ratio": _best(runs[label], "median_cpu_step_s")
                / _best(runs["visgrpo_dapo"], "median_cpu_step_s"),
                "target": overhead_target(c),
                "meets_target": ratio <= overhead_target(c),
            }
    return out


def _script_help(path: Path) -> str:
    res = subprocess.run([sys.executable, "-m", f"experiments.bench.{path.stem}", "--help"],
                         capture_output=True, text=True,
                         env=worker_env(2), cwd=ROOT, timeout=120)
    return res.stdout


def micro_benchmarks(quick: bool, workdir: Path, log) -> dict:
    """Run the helpers' scripts (fresh processes) and collect their JSON / printed figures."""
    out: dict = {}
    for name, quick_args, full_args in MICRO:
        path = HERE / name
        if not path.exists():
            out[name] = {"status": "missing", "note": f"{name} is not in experiments/bench yet"}
            log(f"  {name}: missing")
            continue
        args = list(quick_args if quick else full_args)
        help_text = _script_help(path)
        args = [x for x in args if x != "--quick" or "--quick" in help_text]
        json_out = workdir / f"{path.stem}.json"
        if "--out" in help_text:
            args += ["--out", str(json_out)]
        if "--workdir" in help_text:  # reuse the tiny model and data built for the runs
            args += ["--workdir", str(workdir)]
        t0, cpu0 = time.perf_counter(), _children_cpu()
        try:
            res = subprocess.run([sys.executable, "-m", f"experiments.bench.{path.stem}", *args],
                                 capture_output=True, text=True,
                                 env=worker_env(2), cwd=ROOT, timeout=1800)
        except subprocess.TimeoutExpired:
            out[name] = {"status": "timeout", "args": args}
            continue
        entry: dict = {"status": "ok" if res.returncode == 0 else f"exit {res.returncode}",
                       "args": args, "seconds": time.perf_counter() - t0,
                       "cpu_seconds": _children_cpu() - cpu0,
                       "stdout_tail": res.stdout.strip().splitlines()[-25:]}
        if res.returncode != 0:
            entry["stderr_tail"] = res.stderr.strip().splitlines()[-15:]
        if json_out.exists():
            entry["json"] = json.loads(json_out.read_text())
        parsed = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip().startswith("{")
                  and _is_json(ln)]
        if parsed:
            entry["stdout_json"] = parsed
        entry["figures"] = _figures(name, entry)
        out[name] = entry
        log(f"  {name}: {entry['status']} ({entry['seconds']:.1f} s) {entry['figures']}")
    return out


def _children_cpu() -> float:
    """User + system CPU seconds of this process's terminated (waited-for) children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _figures(name: str, entry: dict) -> dict:
    """Headline numbers of a micro-benchmark (parsed from its JSON or printed lines)."""
    text = "\n".join(entry.get("stdout_tail", []))
    figs: dict = {}
    if name == "logprob_memory.py":
        for variant, mib, sec in re.findall(r"(\w+): peak \+(\d+) MiB\s+\(([\d.]+) s\)", text):
            figs[f"{variant}_peak_mib"], figs[f"{variant}_s"] = float(mib), float(sec)
        m = re.search(r"peak ratio unchunked / chunked = ([\d.]+)x", text)
        if m:
            figs["unchunked_over_chunked_peak"] = float(m.group(1))
    elif name == "probe_memory_bench.py" and "json" in entry:
        rows = {r["config"]: r for r in entry["json"].get("rows", [])}
        for cfg, r in rows.items():
            figs[f"{cfg}_extra_mb"], figs[f"{cfg}_s"] = r.get("extra_vs_sdpa_mb"), r.get("seconds")
        figs.update(entry["json"].get("summary", {}))
    else:
        doc = entry.get("json") or (entry.get("stdout_json") or [None])[-1]
        if isinstance(doc, dict):
            doc = doc.get("summary", doc) if isinstance(doc.get("summary"), dict) else doc
            figs = {k: v for k, v in doc.items() if isinstance(v, (int, float, str, bool))}
    return figs


def _f(x, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def add_ab_ratios(comp: dict, micro: dict) -> None:
    """Add the in-process A/B step ratios of ``credit_overhead_bench.py`` (when it ran) to
    the credit comparisons (``ab_step_ratio``, ``ab_extra_cpu_ms``, ``ab_control_step_ratio``).
    """
    figs = (micro.get("credit_overhead_bench.py") or {}).get("figures") or {}
    for name, c in comp.items():
        if name != "visgrpo_over_trl" and f"{name}_step_ratio" in figs:
            c["ab_step_ratio"] = figs[f"{name}_step_ratio"]
            c["ab_extra_cpu_ms"] = figs.get(f"{name}_extra_cpu_ms")
            c["ab_control_step_ratio"] = figs.get("control_step_ratio")
            c["ab_meets_target"] = figs[f"{name}_step_ratio"] <= c["target"]


def _ab(c: dict) -> str:
    if c.get("ab_step_ratio") is None:
        return "-"
    extra = c.get("ab_extra_cpu_ms")
    return (f"{c['ab_step_ratio']:.3f}x" + (f" ({extra:+.1f} ms)" if extra is not None else "")
            + f", {'met' if c['ab_meets_target'] else 'NOT met'}")


def _load(x) -> str:
    return "-" if not x else " / ".join(f"{v:.1f}" for v in x)


def write_markdown(res: dict) -> str:
    """The results as markdown: machine, settings, medians, ratios vs targets, micro-benchmarks."""
    m, s = res["machine"], res["settings"]
    v = m["versions"]
    load = res.get("load", {})
    lines = [
        "# visgrpo benchmark results", "",
        f"Generated by `python -m experiments.bench{' --quick' if s['quick'] else ''}` on {m['time']}.", "",
        "**Ratios and target checks use each worker's process CPU time** (user + system, "
        "`time.process_time`) per step: the machine is shared, and the wall time of a step also "
        "holds the time the worker waited for a core. Wall-time figures are shown beside them.", "",
        "| machine | |", "|---|---|",
        f"| CPU | {m['cpu']} ({m['logical_cores']} logical, {m['usable_cores']} usable; "
        f"{m['threads_per_run']} torch thread(s) per run) |",
        f"| load average (1 / 5 / 15 min) | start {_load(load.get('start'))}; end {_load(load.get('end'))} |",
        f"| versions | python {m['python']}, torch {v['torch']}, transformers {v['transformers']}, "
        f"trl {v['trl']}, lightning {v['lightning']} |",
        f"| commit | {m['git_commit'][:12]}{' (dirty tree)' if m['git_dirty'] else ''} |",
        f"| work per step | {s['prompts']} prompts x G={s['group']} responses, <= {s['max_completion']} new "
        f"tokens, T={s['temperature']}, AdamW lr {s['lr']}, beta 0, device {s['device']}"
        f"{', vLLM' if s['vllm'] else ''} |",
        f"| repeats | {s['repeats']} fresh-process runs per configuration (visgrpo/TRL alternating), "
        f"{s['steps']} measured steps each after {s['warmup']} warm-up |", "",
        "## End-to-end RL step (medians over runs)", "",
        "CPU s = process CPU seconds per step; samples/CPU-s and tokens/CPU-s = work per CPU second; "
        "CPU share = CPU seconds per wall second of the worker (1 = it had a core to itself).", "",
        "| configuration | CPU s/step | wall s/step | CPU share | samples/CPU-s | samples/s (wall) | "
        "tokens/CPU-s | tokens/s (wall) | mean len | RSS before MB | peak RSS MB | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in res["summary"].items():
        if "error" in r:
            err = str(r["error"]).strip().splitlines()[-1][:120] if r["error"] else "error"
            lines.append(f"| {label} | failed: {err} |" + " |" * 10 + f" 0/{r['runs']} |")
            continue
        lines.append(
            f"| {label} | {_f(r['median_cpu_step_s'])} | {_f(r['median_step_s'])} | {_f(r['cpu_share'], '.2f')} | "
            f"{_f(r['samples_per_cpu_s'], '.1f')} | {_f(r['samples_per_s'], '.1f')} | "
            f"{_f(r['tokens_per_cpu_s'], '.0f')} | {_f(r['tokens_per_s'], '.0f')} | "
            f"{_f(r['mean_completion_len'], '.1f')} | {_f(r['rss_before_mb'], '.0f')} | "
            f"{_f(r['peak_rss_mb'], '.0f')} | {r['ok_runs']}/{r['runs']} |"
        )
    lines += ["", "## Ratios vs targets (checked on CPU time)", "",
              "End-to-end columns: medians over the fresh-process runs above; best run = each "
              "configuration's fastest run (median CPU step). In-process A/B: "
              "`credit_overhead_bench.py` (the training pass with and without the method on one "
              "rollout, interleaved in one process; step = rollout phase + pass; the A/A control "
              "row shows its noise).", "",
              "| comparison | CPU ratio | CPU paired-round median | CPU best run | wall ratio | wall paired-round "
              "median | in-process A/B (CPU) | target | met (CPU, end-to-end) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, c in res["comparisons"].items():
        met = "yes" if c["meets_target"] else "NO"
        if name == "visgrpo_over_trl":
            lines.append(f"| visgrpo / TRL throughput (samples per second) | {_f(c['throughput_ratio'], '.2f')}x | "
                         f"{_f(c['paired_ratio'], '.2f')}x | {_f(c.get('best_throughput_ratio'), '.2f')}x | "
                         f"{_f(c.get('wall_throughput_ratio'), '.2f')}x | "
                         f"{_f(c.get('wall_paired_ratio'), '.2f')}x | - | >= {c['target']}x | {met} |")
        else:
            lines.append(f"| DAPO+{name} / DAPO step time | {_f(c['step_time_ratio'], '.2f')}x | "
                         f"{_f(c['paired_ratio'], '.2f')}x | {_f(c.get('best_step_time_ratio'), '.2f')}x | "
                         f"{_f(c.get('wall_step_time_ratio'), '.2f')}x | "
                         f"{_f(c.get('wall_paired_ratio'), '.2f')}x | {_ab(c)} | <= {c['target']}x | {met} |")
    ctrl = next((c["ab_control_step_ratio"] for c in res["comparisons"].values()
                 if c.get("ab_control_step_ratio") is not None), None)
    if ctrl is not None:
        lines.append(f"| A/A control (plain / plain) | | | | | | {ctrl:.3f}x | | |")
    lines += ["", "## Micro-benchmarks (helpers' scripts, fresh processes)", "",
              "Figures are each script's own: wall-clock, except `credit_vs_loop_bench.py` and "
              "`credit_overhead_bench.py` (process CPU time). Each line also gives the script's total "
              "wall and CPU seconds.", ""]
    for name, e in res.get("micro", {}).items():
        figs = ", ".join(f"{k}={_f(val, '.3g') if isinstance(val, (int, float)) else val}"
                         for k, val in (e.get("figures") or {}).items())
        hidden = {"--out", "--workdir"}
        args = e.get("args", [])
        shown = [x for i, x in enumerate(args) if x not in hidden and (i == 0 or args[i - 1] not in hidden)]
        took = ""
        if "seconds" in e:
            took = (f" ({e['seconds']:.1f} s wall"
                    + (f", {e['cpu_seconds']:.1f} s CPU" if "cpu_seconds" in e else "") + ")")
        lines.append(f"- `{name}` {' '.join(shown)}: {e['status']}{took}" + (f": {figs}" if figs else ""))
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> Path:
    """``out`` (JSON) and ``out`` with ``.md`` (markdown), each written atomically."""
    md = out.with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(results, indent=1, default=str) + "\n"), (md, write_markdown(results))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return md


def rerender(src: Path, out: Path) -> int:
    """Summaries, ratios and markdown re-derived from the raw runs stored in ``src``."""
    results = json.loads(src.read_text())
    runs = results["runs"]
    results["summary"] = {label: summarise(rs) for label, rs in runs.items()}
    credits = [c for c in CREDITS if f"visgrpo_dapo+{c}" in runs]
    results["comparisons"] = comparisons(runs, results["summary"], credits)
    add_ab_ratios(results["comparisons"], results.get("micro", {}))
    md = write_results(results, out)
    print(f"re-derived {out} and {md} from {src}")
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.worker:
        return worker_main(a.worker)
    if a.from_json:
        return rerender(Path(a.from_json), Path(a.out))
    t_start = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="visgrpo-bench-")
    workdir = Path(a.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info(a.threads)
    log(f"machine: {info['cpu']} ({info['usable_cores']} usable cores), torch "
        f"{info['versions']['torch']}, trl {info['versions']['trl']}, commit {info['git_commit'][:10]}")
    model_dir, data_dir = prepare_assets(workdir) if not (a.model and a.data) else (a.model, a.data)
    if a.model and not a.data:
        _, data_dir = prepare_assets(workdir)
    model_dir = a.model or model_dir
    base = RunSpec(side="visgrpo", model_dir=str(model_dir), data_dir=str(data_dir),
                   prompts_per_step=a.prompts, group_size=a.group,
                   max_completion_length=a.max_completion, temperature=a.temperature,
                   learning_rate=a.lr, warmup_steps=a.warmup, measure_steps=a.steps,
                   threads=a.threads, device=a.device, vllm=a.vllm, workdir=str(workdir))
    log(f"throughput: {a.repeats} rounds x {a.steps} measured steps (+{a.warmup} warm-up), "
        f"{a.prompts} prompts x G={a.group}, max {a.max_completion} new tokens")
    runs = throughput_runs(base, a, log)
    summary = {label: summarise(rs) for label, rs in runs.items()}
    micro = {} if a.skip_micro else micro_benchmarks(a.quick, workdir, log)
    results = {
        "machine": info,
        "load": {"start": info["loadavg_start"], "end": loadavg()},
        "settings": {**{k: v for k, v in vars(a).items() if k not in ("worker", "out", "from_json")},
                     "objective": "dapo (dynamic sampling off, overlong shaping off)",
                     "trl": "GRPOTrainer loss_type=dapo eps 0.2/0.28 beta=0 num_iterations=1"},
        "summary": summary,
        "comparisons": comparisons(runs, summary, a.credit),
        "micro": micro,
        "runs": runs,
        "total_s": time.perf_counter() - t_start,
    }
    add_ab_ratios(results["comparisons"], micro)
    out = Path(a.out)
    md = write_results(results, out)
    log(f"wrote {out} and {md} ({results['total_s']:.0f} s)")
    log(md.read_text())
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
