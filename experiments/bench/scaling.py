"""Scaling curves: visgrpo DAPO vs TRL GRPOTrainer and each credit method's overhead, as the
model, the response length and the image grow; whole training steps interleaved.

``python -m experiments.bench.scaling [--quick] [--rounds N] [--out DIR]`` writes
DIR/scaling.{json,md,png} (``--quick``: the same names with ``_quick``);
the committed run is experiments/bench/results/scaling_prefix/.

Design (one axis at a time from a middle point, not the full cross product):
middle = hidden 256 / 6 layers, 128 response tokens, 256 image tokens; the model axis adds
hidden 128 / 4 layers and 512 / 8 layers, the response axis 32 and 512 tokens, the image axis
64 and 1024 tokens (7 points). Each point has its own tiny random-weight Qwen2.5-VL
(``visgrpo.models.tiny.build_tiny``: the text model's width and depth; vision tower 2 blocks of
width 32; the processor's pixel budget fixed at the point's image tokens) and synthetic data
whose square images give exactly that many merged visual tokens (28 px each).

Protocol at a point (noise control): two long-lived workers (:mod:`experiments.bench.stepper`),
visgrpo and TRL, loaded once; then rounds. A round runs one whole training step (generation
forced to the full length, rewards, forward, backward, optimiser) of every configuration in a
random order drawn afresh each round (seeded): visgrpo ``plain`` DAPO, ``plain_control``
(plain again under a second label: the A/A control), each credit method
(``harness.credit_methods()``; the visgrpo worker switches
its credit between steps, so every configuration trains the same policy, in turn) and TRL. Each
step is timed on the worker's process CPU clock (one torch thread), from its command to the
end of its optimiser step. Per round, every configuration's ratio to the same round's plain
step; the tables give the median over rounds and the interquartile range (IQR). The first
round is a warm-up and is dropped. Ratios of steps run seconds apart in one process cancel
the slow drifts of a shared machine's load that made fresh-process runs minutes apart
disagree by 20-45 %.

Growth exponents: per axis, a least-squares fit of log(extra CPU seconds per step of a method
over plain) against log(size) (model: parameter count; response tokens; image tokens), beside
the exponent of the plain step itself (what the forward/backward pass grows like).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from experiments.bench.harness import (
    FAMILY,
    PROMPT_TEMPLATE,
    ROOT,
    RunSpec,
    credit_methods,
    machine_info,
    overhead_target,
    synth_rows,
    worker_env,
)

HERE = Path(__file__).resolve().parent
TRL_TARGET = 1.2
TOKEN_PX = 28  # Qwen2.5-VL merged visual token: patch 14 x merge 2


@dataclass(frozen=True)
class Point:
    axis: str  # "model" | "response" | "image" | "middle"
    hidden: int
    layers: int
    response: int
    image_tokens: int  # a square number: (side / 28)^2

    @property
    def name(self) -> str:
        return f"h{self.hidden}L{self.layers}-r{self.response}-i{self.image_tokens}"


def grid(quick: bool) -> list[Point]:
    """The points: the middle one, then each axis's two others (see the module docstring)."""
    if quick:  # a few seconds per step: a smoke run of the whole pipeline
        mid = Point("middle", 32, 2, 8, 16)
        return [mid, Point("model", 64, 2, 8, 16), Point("response", 32, 2, 16, 16),
                Point("image", 32, 2, 8, 36)]
    mid = Point("middle", 256, 6, 128, 256)
    return [mid,
            Point("model", 128, 4, 128, 256), Point("model", 512, 8, 128, 256),
            Point("response", 256, 6, 32, 256), Point("response", 256, 6, 512, 256),
            Point("image", 256, 6, 128, 64), Point("image", 256, 6, 128, 1024)]


def axis_points(points: list[Point], axis: str) -> list[Point]:
    """The points of one axis (the middle one included), by increasing size."""
    mid = next(p for p in points if p.axis == "middle")
    pts = [mid, *(p for p in points if p.axis == axis)]
    key = {"model": lambda p: (p.hidden, p.layers), "response": lambda p: p.response,
           "image": lambda p: p.image_tokens}[axis]
    return sorted(pts, key=key)


# ----------------------------------------------------------------------------- assets
def assets(p: Point, workdir: Path, n_rows: int = 8) -> tuple[Path, Path, int]:
    """(model dir, data dir, parameter count) of point ``p``, built once under ``workdir``."""
    import datasets
    from safetensors import safe_open

    from data_tools.masks import build_masks
    from visgrpo.data.geometry import processor_geometry
    from visgrpo.data.io import save_dataset
    from visgrpo.data.schema import BASE_FEATURES
    from visgrpo.models.loading import load_processor
    from visgrpo.models.tiny import build_tiny

    side = TOKEN_PX * math.isqrt(p.image_tokens)
    if side * side != p.image_tokens * TOKEN_PX * TOKEN_PX:
        raise ValueError(f"image_tokens must be a square number, got {p.image_tokens}")
    model_dir = workdir / f"model-h{p.hidden}L{p.layers}-i{p.image_tokens}"
    data_dir = workdir / f"data-i{p.image_tokens}-{model_dir.name}"
    rows = synth_rows(n_rows, 0, size=side)
    if not (model_dir / "config.json").exists():
        corpus = [PROMPT_TEMPLATE.format(question=r["question"]) for r in rows]
        pixels = p.image_tokens * TOKEN_PX * TOKEN_PX
        build_tiny(FAMILY, model_dir, corpus=corpus, seed=0, min_pixels=pixels, max_pixels=pixels,
                   hidden_size=p.hidden, num_layers=p.layers)
    if not (data_dir / "visgrpo_meta.json").exists():
        geom = processor_geometry(load_processor(str(model_dir)))
        ds = datasets.Dataset.from_list(rows, features=datasets.Features(BASE_FEATURES))
        ds, _ = build_masks(ds, geom, progress=False)
        save_dataset(ds, data_dir, meta={"processor": geom.fingerprint()}, overwrite=True)
    n_params = 0
    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            n_params += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118
    return model_dir, data_dir, n_params


# ----------------------------------------------------------------------------- workers
class Worker:
    """A :mod:`experiments.bench.stepper` process: one step per :meth:`step`."""

    def __init__(self, spec: RunSpec, spec_path: Path) -> None:
        spec_path.write_text(json.dumps(asdict(spec)))
        self.side = spec.side
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.bench.stepper", str(spec_path)], cwd=ROOT,
            env=worker_env(spec.threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.err, text=True, bufsize=1)

    def _until(self, prefix: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line
        self.err.seek(0)
        raise RuntimeError(f"{self.side} worker ended before {prefix.strip()}: {self.err.read()[-3000:]}")

    def step(self, label: str) -> dict:
        self._until("READY")
        self.proc.stdin.write(f"go {label}\n")
        self.proc.stdin.flush()
        return json.loads(self._until("STEP ")[5:])

    def close(self) -> None:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.err.close()


def measure_point(p: Point, workdir: Path, rounds: int, prompts: int, group: int, log) -> dict:
    """Interleaved rounds at point ``p``: per label, the CPU seconds of each measured step."""
    model_dir, data_dir, n_params = assets(p, workdir)
    labels = ["plain", "plain_control", *credit_methods(), "trl"]
    total = rounds + 1  # + 1 warm-up round
    base = RunSpec(side="visgrpo", model_dir=str(model_dir), data_dir=str(data_dir),
                   prompts_per_step=prompts, group_size=group, max_completion_length=p.response,
                   warmup_steps=0, measure_steps=total * len(labels) + 2, workdir=str(workdir))
    t0 = time.perf_counter()
    workers = {side: Worker(RunSpec(**{**asdict(base), "side": side}), workdir / f"spec-{p.name}-{side}.json")
               for side in ("visgrpo", "trl")}
    steps: dict[str, list[dict]] = {lab: [] for lab in labels}
    try:
        for r in range(total):
            # a fresh random order per round: a rotation would keep every label behind the same
            # one (plain always right after TRL's step, in the other process, with cold caches)
            order = labels[:]
            random.Random(r).shuffle(order)
            for lab in order:
                res = workers["trl" if lab == "trl" else "visgrpo"].step(lab)
                if r:  # round 0 is the warm-up
                    steps[lab].append(res)
            if r:
                log(f"  {p.name} round {r}: " + " ".join(
                    f"{lab} {steps[lab][-1]['cpu_s']:.2f}" for lab in labels))
    finally:
        for w in workers.values():
            w.close()
    return {"point": asdict(p), "name": p.name, "params": n_params, "steps": steps,
            "wall_s": time.perf_counter() - t0, "summary": summarise_point(steps)}


# ----------------------------------------------------------------------------- statistics
def quantiles(xs: list[float]) -> dict:
    """Median, first and third quartile (inclusive method), min and max of ``xs``."""
    xs = sorted(xs)
    if len(xs) == 1:
        return {"median": xs[0], "q1": xs[0], "q3": xs[0], "min": xs[0], "max": xs[0]}
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "min": xs[0], "max": xs[-1]}


def summarise_point(steps: dict[str, list[dict]]) -> dict:
    """Per label: CPU s/step, and per-round ratio and extra CPU seconds vs the round's plain step.

    ``trl``'s ratio is TRL's step over visgrpo plain's, i.e. visgrpo's samples per CPU second
    over TRL's (both train the same number of responses per step).
    """
    plain = [s["cpu_s"] for s in steps["plain"]]
    out: dict = {}
    for lab, ss in steps.items():
        cpu = [s["cpu_s"] for s in ss]
        out[lab] = {
            "cpu_s": quantiles(cpu),
            "ratio": quantiles([c / b for c, b in zip(cpu, plain, strict=True)]),
            "extra_s": quantiles([c - b for c, b in zip(cpu, plain, strict=True)]),
            "tokens": statistics.median(s["tokens"] for s in ss),
            "samples": statistics.median(s["samples"] for s in ss),
        }
    return out


def growth_exponent(sizes: list[float], costs: list[float]) -> float | None:
    """Least-squares slope of log(cost) on log(size); None unless every cost is > 0."""
    if len(sizes) < 2 or any(c <= 0 for c in costs):
        return None
    lx, ly = [math.log(s) for s in sizes], [math.log(c) for c in costs]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den if den else None


def exponents(points: list[Point], results: dict[str, dict]) -> dict:
    """Per axis: the plain step's exponent and each method's extra-cost exponent."""
    out: dict = {}
    for axis in ("model", "response", "image"):
        pts = axis_points(points, axis)
        if len(pts) < 2 or any(p.name not in results for p in pts):
            continue
        size = {"model": lambda p: results[p.name]["params"], "response": lambda p: p.response,
                "image": lambda p: p.image_tokens}[axis]
        xs = [float(size(p)) for p in pts]
        summ = [results[p.name]["summary"] for p in pts]
        row = {"sizes": xs, "plain_step": growth_exponent(xs, [s["plain"]["cpu_s"]["median"] for s in summ]),
               "trl_step": growth_exponent(xs, [s["trl"]["cpu_s"]["median"] for s in summ])}
        for m in credit_methods():
            row[m] = growth_exponent(xs, [s[m]["extra_s"]["median"] for s in summ])
            row[f"{m}_extra_s"] = [s[m]["extra_s"]["median"] for s in summ]
        out[axis] = row
    return out


# ----------------------------------------------------------------------------- report
def _fmt(q: dict, digits: int = 3) -> str:
    return f"{q['median']:.{digits}f} [{q['q1']:.{digits}f}, {q['q3']:.{digits}f}]"


def targets(points: list[Point], results: dict[str, dict]) -> dict:
    """Target checks at the largest model (issue 17): visgrpo >= 1.2x TRL samples per CPU-s;
    each credit method <= 1.10x plain DAPO (EASE <= 1.25x); the A/A control within +-3 %.
    """
    largest = [p for p in axis_points(points, "model") if p.name in results][-1]
    s = results[largest.name]["summary"]
    out = {"point": largest.name, "trl_ratio": s["trl"]["ratio"]["median"],
           "trl_met": s["trl"]["ratio"]["median"] >= TRL_TARGET,
           "control_ratio": s["plain_control"]["ratio"]["median"],
           "control_met": abs(s["plain_control"]["ratio"]["median"] - 1) <= 0.03}
    for m in credit_methods():
        out[f"{m}_ratio"] = s[m]["ratio"]["median"]
        out[f"{m}_met"] = s[m]["ratio"]["median"] <= overhead_target(m)
    return out


def write_markdown(doc: dict, path: Path) -> None:
    methods = list(credit_methods())
    lines = [f"# Scaling: visgrpo DAPO vs TRL GRPOTrainer, credit overhead ({doc['machine']['time']})", "",
             f"{doc['rounds']} interleaved rounds per point (+1 warm-up), {doc['prompts']} prompts x "
             f"{doc['group']} responses per step, responses forced to the full length, 1 torch thread, "
             "process CPU time. Cells: median [IQR] over rounds of the per-round ratio to the same "
             "round's plain DAPO step. TRL column: TRL step / visgrpo plain step = visgrpo samples "
             "per CPU-s over TRL's (target >= 1.2 at the largest model).", "",
             "| point | params | plain CPU s/step | TRL CPU s/step | visgrpo/TRL | A/A control | "
             + " | ".join(methods) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(methods)]
    for name, res in doc["results"].items():
        s = res["summary"]
        lines.append(f"| {name} | {res['params'] / 1e6:.2f}M | {_fmt(s['plain']['cpu_s'])} | "
                     f"{_fmt(s['trl']['cpu_s'])} | {_fmt(s['trl']['ratio'])} | {_fmt(s['plain_control']['ratio'])} | "
                     + " | ".join(_fmt(s[m]["ratio"]) for m in methods) + " |")
    lines += ["", "Growth exponents (slope of log cost on log size along each axis; methods: their "
              "extra CPU seconds per step over plain; n/a where an extra is <= 0, i.e. within noise):", "",
              "| axis | sizes | plain step | TRL step | " + " | ".join(methods) + " |",
              "|---|---|---|---|" + "---|" * len(methods)]

    def e(v):
        return "n/a" if v is None else f"{v:.2f}"

    for axis, row in doc["exponents"].items():
        lines.append(f"| {axis} | {', '.join(f'{x:g}' for x in row['sizes'])} | {e(row['plain_step'])} | "
                     f"{e(row['trl_step'])} | " + " | ".join(e(row[m]) for m in methods) + " |")
    t = doc["targets"]
    lines += ["", f"Targets at the largest model ({t['point']}): visgrpo/TRL {t['trl_ratio']:.3f} "
              f"(>= {TRL_TARGET}: {'met' if t['trl_met'] else 'NOT met'}); A/A control {t['control_ratio']:.3f} "
              f"(+-3 %: {'met' if t['control_met'] else 'NOT met'}); "
              + "; ".join(f"{m} {t[f'{m}_ratio']:.3f} (<= {overhead_target(m)}: "
                          f"{'met' if t[f'{m}_met'] else 'NOT met'})" for m in methods),
              "", f"Load average at start / end: {doc['machine']['loadavg_start']} / {doc['loadavg_end']}; "
              f"measurement wall time summed over points {doc['wall_s'] / 60:.1f} min.", ""]
    path.write_text("\n".join(lines))


def plot(doc: dict, points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(credit_methods())
    res = doc["results"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for col, axis in enumerate(("model", "response", "image")):
        pts = [p for p in axis_points(points, axis) if p.name in res]
        if not pts:
            continue
        xs = doc["exponents"].get(axis, {}).get("sizes") or list(range(len(pts)))
        ax = axes[0, col]
        for lab in ["plain_control", *methods, "trl"]:
            q = [res[p.name]["summary"][lab]["ratio"] for p in pts]
            med = [v["median"] for v in q]
            err = [[v["median"] - v["q1"] for v in q], [v["q3"] - v["median"] for v in q]]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3,
                        label="TRL step / visgrpo plain" if lab == "trl" else lab)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{axis}: step CPU ratio to plain DAPO (median, IQR)")
        ax.set_xlabel({"model": "parameters", "response": "response tokens", "image": "image tokens"}[axis])
        ax.legend(fontsize=7)
        ax = axes[1, col]
        ax.plot(xs, [res[p.name]["summary"]["plain"]["cpu_s"]["median"] for p in pts], "k-o", label="plain step")
        ax.plot(xs, [res[p.name]["summary"]["trl"]["cpu_s"]["median"] for p in pts], "k--s", label="TRL step")
        for m in methods:
            ex = [res[p.name]["summary"][m]["extra_s"]["median"] for p in pts]
            ax.plot(xs, [max(v, 1e-4) for v in ex], marker="o", label=f"{m} extra (<=0 drawn at 1e-4)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("CPU s per step")
        ax.set_title(f"{axis}: step cost and extra cost")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny grid, 2 rounds (pipeline smoke run)")
    p.add_argument("--rounds", type=int, help="measured interleaved rounds per point (default 3, quick 2)")
    p.add_argument("--prompts", type=int, default=1)
    p.add_argument("--group", type=int, default=2, help="responses per prompt (G)")
    p.add_argument("--only", default="", help="comma-separated point names (default: all)")
    p.add_argument("--only-strict", action="store_true", help="measure only the --only points "
                   "(not the middle one), save them under OUT/points and stop (no report)")
    p.add_argument("--resume", action="store_true", help="load points already saved under OUT/points")
    p.add_argument("--report-only", action="store_true", help="with --resume: report the saved points, measure none")
    p.add_argument("--workdir", help="where models and data are built (default: a temp dir)")
    p.add_argument("--out", default="runs/bench/scaling",
                   help="output directory (default under runs/; experiments/bench/results only when named)")
    a = p.parse_args(argv)
    rounds = a.rounds or (2 if a.quick else 3)
    points = grid(a.quick)
    measure = [q for q in points if not a.only or q.name in a.only.split(",") or q.axis == "middle"]
    if a.only_strict:
        measure = [q for q in points if q.name in a.only.split(",")]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "scaling_quick" if a.quick else "scaling"
    info = machine_info(1)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="scaling_") as tmp:
        work = Path(a.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for q in measure:
            saved = out / "points" / f"{stem}-{q.name}.json"
            if a.resume and saved.exists():  # measured by an earlier (or a parallel) invocation
                results[q.name] = json.loads(saved.read_text())
                continue
            if a.report_only:
                continue
            print(f"point {q.name} ({q.axis})", flush=True)
            results[q.name] = measure_point(q, work, rounds, a.prompts, a.group, lambda m: print(m, flush=True))
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.with_suffix(".tmp").write_text(json.dumps(results[q.name]))
            saved.with_suffix(".tmp").replace(saved)
    if a.only_strict:  # a share of the grid for a parallel run; --resume without it reports
        return {"results": results}
    points = [q for q in measure if q.name in results]
    doc = {"bench": "scaling", "machine": info, "rounds": rounds, "prompts": a.prompts, "group": a.group,
           "points": [asdict(q) for q in points], "results": results,
           "exponents": exponents(points, results), "targets": targets(points, results),
           "wall_s": sum(r.get("wall_s", 0.0) for r in results.values()),  # points' own, summed
           "report_wall_s": time.perf_counter() - t0, "loadavg_end": machine_info(1)["loadavg_start"]}
    tmp_json = out / f".{stem}.json.tmp"
    tmp_json.write_text(json.dumps(doc, indent=1) + "\n")
    tmp_json.replace(out / f"{stem}.json")
    write_markdown(doc, out / f"{stem}.md")
    plot(doc, points, out / f"{stem}.png")
    print((out / f"{stem}.md").read_text())
    return doc


if __name__ == "__main__":
    main()
