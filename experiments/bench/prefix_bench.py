"""Shared-prefix vs plain teacher-forced forward + backward (``policy_forward``), interleaved.

``python -m experiments.bench.prefix_bench [--rounds N] [--prompts P] [--out FILE]``

For each case (image tokens per prompt, G, response tokens) a tiny Qwen2.5-VL (text hidden
512, 8 layers; every prompt holds exactly N image tokens, as in prefill_bench.py) samples G
responses for each of P prompts, forced to the full length, once. Each round then times,
in rotating order, ``policy_forward(share_prefix=False)`` + backward (A),
``share_prefix=True`` + backward (B) and A again (the A/A control) on the process CPU
clock, one torch thread: the loss is the sum of the token log-probs and entropies (the
training step's forward and backward; the images are shared by both, ``share_images``).
Reported: median [IQR] over rounds of B/A and A'/A per case, written to ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from experiments.bench.prefill_bench import interleaved_aba, prompts, run_cases
from visgrpo.attention.forward import policy_forward
from visgrpo.rollout import HFRolloutEngine, SamplingConfig

CASES = ((256, 2, 128), (1024, 2, 128), (256, 8, 128))  # (image tokens, G, response tokens)


def run_case(model, processor, n_prompts: int, n_tokens: int, G: int, T: int, rounds: int) -> dict:
    pb, prompt_len = prompts(processor, n_prompts, n_tokens)
    sampling = SamplingConfig(max_new_tokens=T, num_generations=G, temperature=1.0)
    rb = HFRolloutEngine().generate(model, processor, pb, sampling, seed=0)
    if rb.response_mask.shape[1] != T or not rb.response_mask.all():
        raise RuntimeError(f"prefix_bench: responses not forced to {T} tokens")

    def call(label: str):
        model.zero_grad(set_to_none=True)
        out = policy_forward(model, rb, None, share_prefix=label == "B")
        (out.logp.sum() + out.entropies.sum()).backward()
        return out.logp.detach()

    logp = {label: call(label) for label in ("A", "B")}  # warm-up, and the check
    err = float((logp["A"] - logp["B"]).abs().max())
    if err > 1e-4:
        raise RuntimeError(f"prefix_bench: shared and plain log-probs differ by {err}")
    return dict(image_tokens=n_tokens, G=G, response_tokens=T, prompt_len=prompt_len, max_err=err,
                **interleaved_aba(call, rounds))


def table(rows: list[dict], args, load_before, load_after) -> str:
    head = (
        f"# Shared-prefix vs plain teacher-forced forward + backward (policy_forward)\n\n"
        f"`python -m experiments.bench.prefix_bench --rounds {args.rounds} --prompts {args.prompts}`: "
        f"tiny Qwen2.5-VL (text hidden {args.hidden}, {args.layers} layers), {args.prompts} prompts x G "
        f"rows, responses forced to full length, loss = sum of log-probs + entropies, 1 torch thread, "
        f"process CPU time, {args.rounds} interleaved rounds of A (share_prefix=False), "
        f"B (share_prefix=True), A' (A/A control). Load average before / after: {load_before} / "
        f"{load_after} on a shared 2-core machine: the numbers are noisy.\n\n"
        "| image tokens | G | response tokens | prompt tokens | max abs logp diff | A: plain (s) "
        "| B: shared (s) | B/A median [IQR] | A'/A median [IQR] |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['image_tokens']} | {r['G']} | {r['response_tokens']} | {r['prompt_len']} | {r['max_err']:.1e} "
        f"| {r['a_s']:.2f} | {r['b_s']:.2f} | {r['ab'][1]:.3f} [{r['ab'][0]:.3f}, {r['ab'][2]:.3f}] "
        f"| {r['aa'][1]:.3f} [{r['aa'][0]:.3f}, {r['aa'][2]:.3f}] |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--cases", type=int, default=len(CASES), help="run the first N of CASES")
    p.add_argument("--out", type=Path, default=Path("runs/bench/prefix.md"),
                   help="table (default under runs/; the committed experiments/bench/results/prefix.md "
                        "only when named)")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error("--rounds must be >= 2 (quartiles)")
    torch.manual_seed(0)
    return run_cases(args, CASES[: args.cases], "prefix-bench", run_case, table)


if __name__ == "__main__":
    main()
