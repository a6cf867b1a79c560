"""Shared pieces of the benchmark: the run spec, synthetic data, the tiny model, machine info,
per-process memory, fresh-subprocess workers and medians.

Every measured configuration runs in a fresh Python process (``python -m experiments.bench
--worker SPEC.json``, :mod:`experiments.bench.worker`), so its peak resident set is its own.
A worker runs ``warmup_steps +
measure_steps`` optimiser steps and reports, for the measured steps only:

* ``step_times``: wall time between the ends of consecutive optimiser steps (so everything a
  step does is inside: prompt collation, rollout generation, rewards, the teacher-forced
  forward, backward, optimiser, logging);
* ``cpu_step_times``: the worker process's CPU time (user + system, all its threads:
  ``time.process_time``) over the same intervals. On a shared machine the wall time of a
  step grows with the time the process waits for a core; its CPU time does not (it still
  grows somewhat with cache and SMT contention), so ratios and target checks use CPU time;
* ``completion_tokens``: real response tokens per step (EOS included, padding excluded);
* ``peak_rss_mb``: the process's peak resident set during the measured steps (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs`` at the end of the warm-up), and
  ``rss_before_mb``: its resident set at that moment (model, optimiser state, data loaded).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAMILY = "qwen2_5_vl"
# visgrpo's default prompt template (visgrpo.rollout.prompts.DEFAULT_PROMPT_TEMPLATE); both
# sides get the same user text, so the chat-template prompts are token-for-token identical.
PROMPT_TEMPLATE = (
    "{question}\nThink inside <think></think> and give the final answer inside <answer></answer>."
)
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
SHAPES = ("circle", "square")
FORMAT_RE = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.S)


def credit_methods() -> tuple[str, ...]:
    """The credit methods the bench measures: every registered one but the plain ``none``."""
    from visgrpo.credit import CREDIT_METHODS  # lazy, like every visgrpo import of the bench

    return tuple(name for name in CREDIT_METHODS if name != "none")


def overhead_target(method: str) -> float:
    """Issue 8's step-time target of ``method`` over plain DAPO: 1.25 for EASE (a backward
    through the attention probe), 1.10 for every other method (new ones included).
    """
    return 1.25 if method == "ease" else 1.10


def bench_reward(text: str, answer: str) -> float:
    """The benchmark's reward, used by both sides.

    1 when the gold option letter (upper case) occurs anywhere in the response, + 0.1 for the
    ``<think>..</think><answer>..</answer>`` format, + 0.05 x the fraction of the response's
    characters that are option letters (A-D). Lenient and dense on purpose: even a
    random-weight model then gets groups with unequal rewards, non-zero advantages and
    high-reward trajectories (EASE's gate), so every part of the step does real work.
    """
    hit = str(answer).strip() in text
    letters = sum(ch in "ABCD" for ch in text) / max(len(text), 1)
    return float(hit) + 0.1 * float(FORMAT_RE.match(text) is not None) + 0.05 * letters


@dataclass
class RunSpec:
    """One measured configuration (identical settings are given to visgrpo and TRL)."""

    side: str  # "visgrpo" | "trl"
    model_dir: str
    data_dir: str
    credit: list[str] = field(default_factory=list)  # visgrpo credit methods ([] = plain DAPO)
    prompts_per_step: int = 2
    group_size: int = 4
    max_completion_length: int = 32
    temperature: float = 1.0
    learning_rate: float = 1e-5
    max_grad_norm: float = 1.0
    warmup_steps: int = 1
    measure_steps: int = 3
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    vllm: bool = False
    workdir: str = ""

    @property
    def label(self) -> str:
        if self.side == "trl":
            return "trl_grpo"
        return "visgrpo_dapo" + "".join(f"+{c}" for c in self.credit)


# ----------------------------------------------------------------------------- memory
def rss_mb() -> float:
    """Current resident set of this process (MiB)."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Peak resident set since start or the last :func:`reset_peak_rss` (MiB)."""
    hwm = _status_kib("VmHWM")
    if hwm <= 0:  # no /proc: ru_maxrss cannot be reset, but is still a peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return hwm / 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` value 5); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _diffs(marks: list[float], first: int) -> list[float]:
    """Lengths of the intervals between consecutive ``marks`` from mark ``first`` on."""
    return [b - a for a, b in zip(marks[first:-1], marks[first + 1 :], strict=True)]


class StepMeter:
    """Step-end timestamps (wall and process CPU), tokens per step and the peak RSS of the
    measured steps.

    Call :meth:`start` when training starts and :meth:`step_end` after every optimiser step;
    step ``k`` lasts from the previous mark (the start for ``k = 0``) to its own end, on the
    wall clock (``time.perf_counter``) and on the process CPU clock (``time.process_time``:
    user + system time of every thread of this process). The first ``warmup_steps`` steps
    are not measured; the peak-RSS mark is reset after them.
    """

    def __init__(self, warmup_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup = warmup_steps
        self.marks: list[float] = []
        self.cpu_marks: list[float] = []
        self.tokens: list[int] = []
        self.samples: list[int] = []
        self.rss_before = 0.0
        self.reset_ok = False
        self.load_start: list[float] | None = None

    def _maybe_reset(self) -> None:
        if len(self.tokens) == self.warmup:
            self.rss_before = rss_mb()
            self.reset_ok = reset_peak_rss()
            self.load_start = loadavg()

    def _mark(self) -> None:
        self.marks.append(time.perf_counter())
        self.cpu_marks.append(time.process_time())

    def start(self) -> None:
        self.marks, self.cpu_marks = [], []
        self._mark()
        self._maybe_reset()

    def step_end(self, completion_tokens: int, samples: int) -> None:
        if not self.marks:
            raise RuntimeError("StepMeter.step_end before start")
        self._mark()
        self.tokens.append(int(completion_tokens))
        self.samples.append(int(samples))
        self._maybe_reset()

    def result(self, spec: RunSpec, setup_s: float, extra: dict | None = None) -> dict:
        w = self.warmup
        if len(self.tokens) < w + 1:
            raise RuntimeError(f"{spec.label}: {len(self.tokens)} steps ran, need {w + 1}")
        times, cpu = _diffs(self.marks, w), _diffs(self.cpu_marks, w)
        tokens, samples = self.tokens[w:], self.samples[w:]
        cpu_total = max(sum(cpu), 1e-9)  # a coarse CPU clock can read 0 for a very short step
        return {
            "label": spec.label,
            "side": spec.side,
            "credit": list(spec.credit),
            "step_times": times,
            "cpu_step_times": cpu,
            "completion_tokens": tokens,
            "samples_per_step": statistics.median(samples),
            "median_step_s": statistics.median(times),
            "median_cpu_step_s": statistics.median(cpu),
            "samples_per_s": sum(samples) / sum(times),
            "tokens_per_s": sum(tokens) / sum(times),
            "samples_per_cpu_s": sum(samples) / cpu_total,
            "tokens_per_cpu_s": sum(tokens) / cpu_total,
            "cpu_share": sum(cpu) / sum(times),  # CPU seconds per wall second (1 thread: <= ~1)
            "loadavg_start": self.load_start,
            "loadavg_end": loadavg(),
            "mean_completion_len": sum(tokens) / max(sum(samples), 1),
            "rss_before_mb": self.rss_before,
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_reset": self.reset_ok,
            "setup_s": setup_s,
            **(extra or {}),
        }


# ----------------------------------------------------------------------------- data + model
def synth_rows(n: int, seed: int = 0, size: int = 168) -> list[dict]:
    """``n`` image-question rows: one coloured shape on grey; "what colour?" with 4 options."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour, shape = rng.choice(names), rng.choice(SHAPES)
        side = rng.randint(size // 4, size // 2)
        x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
        img = Image.new("RGB", (size, size), (128, 128, 128))
        draw = ImageDraw.Draw(img)
        box = [x0, y0, x0 + side, y0 + side]
        (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
        letters = "ABCD"
        options = " ".join(f"{letters[k]}. {c}" for k, c in enumerate(names))
        rows.append(
            {
                "id": f"bench-{i}",
                "image": img,
                "question": f"What colour is the {shape}? Options: {options}",
                "answer": letters[names.index(colour)],
                "answer_type": "choice",
                "boxes": [[float(v) for v in box]],
                "box_labels": [shape],
                "source": "bench-synth",
                "width": size,
                "height": size,
            }
        )
    return rows


def prepare_assets(workdir: Path, n_rows: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """Build (once) the tiny Qwen2.5-VL directory and the evidence dataset both sides read."""
    import datasets

    from data_tools.masks import build_masks
    from visgrpo.data.geometry import processor_geometry
    from visgrpo.data.io import save_dataset
    from visgrpo.data.schema import BASE_FEATURES
    from visgrpo.models.loading import load_processor
    from visgrpo.models.tiny import build_tiny

    model_dir, data_dir = workdir / "tiny_qwen2_5_vl", workdir / "data"
    rows = synth_rows(n_rows, seed)
    if not (model_dir / "config.json").exists():
        corpus = [PROMPT_TEMPLATE.format(question=r["question"]) for r in rows]
        build_tiny(FAMILY, model_dir, corpus=corpus, seed=seed)
    if not (data_dir / "visgrpo_meta.json").exists():
        # evidence columns exactly as `visgrpo-data masks` builds them
        # (docs/methods.md, EASE and Evidence-to-token mapping)
        geom = processor_geometry(load_processor(str(model_dir)))
        ds = datasets.Dataset.from_list(rows, features=datasets.Features(BASE_FEATURES))
        ds, _ = build_masks(ds, geom, progress=False)
        save_dataset(ds, data_dir, meta={"processor": geom.fingerprint()}, overwrite=True)
    return model_dir, data_dir


# ----------------------------------------------------------------------------- process
def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(int(n), 1))


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_worker(spec: RunSpec, timeout: float = 1800) -> dict:
    """Run ``spec`` in a fresh interpreter; returns its result dict (``error`` set on failure)."""
    spec_path = Path(spec.workdir) / f"spec-{os.getpid()}-{time.time_ns()}.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    cmd = [sys.executable, "-m", "experiments.bench", "--worker", str(spec_path)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=worker_env(spec.threads), cwd=ROOT, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"label": spec.label, "side": spec.side, "error": f"timeout after {timeout:.0f} s"}
    finally:
        spec_path.unlink(missing_ok=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            res = json.loads(line[len("BENCH_RESULT ") :])
            res["wall_s"] = time.perf_counter() - t0
            return res
    tail = (proc.stderr or proc.stdout)[-2500:]
    return {"label": spec.label, "side": spec.side, "error": f"exit {proc.returncode}: {tail}"}


# ----------------------------------------------------------------------------- info + stats
def machine_info(threads: int) -> dict:
    """CPU model, cores, library versions and the git commit of the code under test."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "transformers", "trl", "lightning", "accelerate", "datasets"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return out.stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "threads_per_run": threads,
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "loadavg_start": loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": dirty,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def summarise(runs: list[dict]) -> dict:
    """Medians over repeated runs of one configuration (failed runs are counted, not used)."""
    ok = [r for r in runs if "error" not in r]
    out: dict = {"runs": len(runs), "ok_runs": len(ok)}
    if not ok:
        out["error"] = runs[-1].get("error", "no run") if runs else "no run"
        return out
    for key in ("median_step_s", "median_cpu_step_s", "samples_per_s", "tokens_per_s",
                "samples_per_cpu_s", "tokens_per_cpu_s", "cpu_share", "peak_rss_mb",
                "rss_before_mb", "mean_completion_len", "samples_per_step"):
        out[key] = statistics.median(r[key] for r in ok)
    out["all_step_s"] = [round(t, 4) for r in ok for t in r["step_times"]]
    out["all_cpu_step_s"] = [round(t, 4) for r in ok for t in r["cpu_step_times"]]
    return out
