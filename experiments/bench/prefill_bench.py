"""Shared prefill vs G-fold prefill in ``HFRolloutEngine.generate``, interleaved in one process.

``python -m experiments.bench.prefill_bench [--rounds N] [--prompts P] [--out FILE]``

For each case (image tokens per prompt, G, new tokens) a tiny Qwen2.5-VL (text hidden 256,
6 layers; ``min_pixels = max_pixels = N * 28 * 28``, square images, so every prompt holds
exactly N image tokens) generates G responses for each of P prompts, every response forced
to the full length (``force_lengths``: EOS cannot end it early). Each round times, in
rotating order, ``share_prefill=False`` (A), ``share_prefill=True`` (B) and A again (the
A/A control: its ratio shows the measurement's bias and noise) on the process CPU clock,
one torch thread, same seed. Reported: median [IQR] over rounds of B/A and A'/A per case.
The table is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import tempfile
import time
from pathlib import Path

from transformers import AutoModelForImageTextToText, AutoProcessor

from experiments.bench.harness import PROMPT_TEMPLATE, loadavg, set_threads, synth_rows
from experiments.bench.stepper import force_lengths
from visgrpo.data.geometry import processor_geometry
from visgrpo.evaluation.report import write_atomic
from visgrpo.lightning.data import PromptCollator
from visgrpo.models.tiny import build_tiny
from visgrpo.rollout import HFRolloutEngine, SamplingConfig
from visgrpo.rollout.assemble import encode_prompts

CASES = ((256, 2, 128), (1024, 2, 128), (256, 8, 128))  # (image tokens, G, new tokens)
TOKEN_PX = 28  # pixels per merged image token side (Qwen2.5-VL: 14-px patches, 2x2 merge)


def build(workdir: Path, n_tokens: int, hidden: int, layers: int):
    """(model, processor) of a tiny Qwen2.5-VL whose processor gives ``n_tokens`` per image."""
    path = workdir / f"tiny_{n_tokens}"
    pixels = n_tokens * TOKEN_PX * TOKEN_PX
    corpus = [PROMPT_TEMPLATE.format(question=r["question"]) for r in synth_rows(8)]
    build_tiny("qwen2_5_vl", path, corpus=corpus, min_pixels=pixels, max_pixels=pixels,
               hidden_size=hidden, num_layers=layers)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    return model, AutoProcessor.from_pretrained(path)


def prompts(processor, n_prompts: int, n_tokens: int):
    """A PromptBatch of ``n_prompts`` square synthetic images of ``n_tokens`` tokens each."""
    side = math.isqrt(n_tokens) * TOKEN_PX
    collate = PromptCollator(processor, processor_geometry(processor), PROMPT_TEMPLATE, None)
    pb = collate(synth_rows(n_prompts, seed=1, size=side))
    enc = encode_prompts(processor, pb)
    counts = (enc["input_ids"] == processor.image_token_id).sum(-1).tolist()
    if counts != [n_tokens] * n_prompts:
        raise ValueError(f"prefill_bench: prompts hold {counts} image tokens, expected {n_tokens}")
    return pb, enc["input_ids"].shape[1]


def cpu_seconds(fn) -> float:
    """Process CPU seconds of ``fn()`` (garbage collected before, outside the timing)."""
    gc.collect()
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def interleaved_aba(call, rounds: int) -> dict:
    """Time ``call("A")``, ``call("B")`` and ``call("A2")`` (A again: the A/A control) in a
    rotating order for ``rounds`` rounds; medians of A and B (CPU s) and the quartiles of the
    per-round ratios B/A and A2/A.
    """
    times: dict[str, list[float]] = {"A": [], "B": [], "A2": []}
    order = ["A", "B", "A2"]
    for r in range(rounds):
        for label in order[r % 3 :] + order[: r % 3]:
            times[label].append(cpu_seconds(lambda label=label: call(label)))
    ab = [b / a for a, b in zip(times["A"], times["B"], strict=True)]
    aa = [c / a for a, c in zip(times["A"], times["A2"], strict=True)]
    return dict(a_s=statistics.median(times["A"]), b_s=statistics.median(times["B"]), ab=quartiles(ab),
                aa=quartiles(aa))


def run_cases(args, cases, name: str, run_case, table) -> str:
    """Build one model per image-token count, run ``run_case`` on every case, write and print
    ``table`` to ``args.out``. ``args``: rounds, prompts, hidden, layers, out.
    """
    set_threads(1)
    load_before = loadavg()
    force_lengths(max(T for _, _, T in cases))  # EOS suppressed until then; max_new_tokens caps
    rows, models = [], {}
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        for n_tokens, G, T in cases:
            if n_tokens not in models:
                models[n_tokens] = build(Path(tmp), n_tokens, args.hidden, args.layers)
            rows.append(run_case(*models[n_tokens], args.prompts, n_tokens, G, T, args.rounds))
            print(rows[-1], flush=True)
    text = table(rows, args, load_before, loadavg())
    write_atomic(args.out, text)
    print(text)
    return text


def run_case(model, processor, n_prompts: int, n_tokens: int, G: int, T: int, rounds: int) -> dict:
    pb, prompt_len = prompts(processor, n_prompts, n_tokens)
    sampling = SamplingConfig(max_new_tokens=T, num_generations=G, temperature=1.0)
    engines = {"A": HFRolloutEngine(share_prefill=False), "B": HFRolloutEngine(share_prefill=True)}

    def call(label: str):
        rb = engines[label[0]].generate(model, processor, pb, sampling, seed=0)
        if rb.response_mask.sum(-1).tolist() != [T] * (n_prompts * G):
            raise RuntimeError(f"prefill_bench: responses not forced to {T} tokens")

    call("A"), call("B")  # warm-up
    return dict(image_tokens=n_tokens, G=G, new_tokens=T, prompt_len=prompt_len, **interleaved_aba(call, rounds))


def table(rows: list[dict], args, load_before, load_after) -> str:
    head = (
        f"# Shared prefill vs G-fold prefill (HFRolloutEngine.generate)\n\n"
        f"`python -m experiments.bench.prefill_bench --rounds {args.rounds} --prompts {args.prompts}`: "
        f"tiny Qwen2.5-VL (text hidden {args.hidden}, {args.layers} layers), {args.prompts} prompts "
        f"per call, responses forced to full length, 1 torch thread, process CPU time, {args.rounds} "
        f"interleaved rounds of A (share_prefill=False), B (share_prefill=True), A' (A/A control). "
        f"Load average before / after: {load_before} / {load_after} on a shared 2-core machine: "
        f"the numbers are noisy.\n\n"
        "| image tokens | G | new tokens | prompt tokens | A: G-fold (s) | B: shared (s) "
        "| B/A median [IQR] | A'/A median [IQR] |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['image_tokens']} | {r['G']} | {r['new_tokens']} | {r['prompt_len']} | {r['a_s']:.2f} "
        f"| {r['b_s']:.2f} | {r['ab'][1]:.3f} [{r['ab'][0]:.3f}, {r['ab'][2]:.3f}] "
        f"| {r['aa'][1]:.3f} [{r['aa'][0]:.3f}, {r['aa'][2]:.3f}] |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--out", type=Path, default=Path("runs/bench/prefill.md"),
                   help="table (default under runs/; the committed experiments/bench/results/prefill.md "
                        "only when named)")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error("--rounds must be >= 2 (quartiles)")
    return run_cases(args, CASES, "prefill-bench", run_case, table)


if __name__ == "__main__":
    main()
