"""Vectorised VGPO credit vs a plain Python loop over the authors' equations.

``python -m experiments.bench.credit_vs_loop_bench [--quick] [--out results.json]``

Times :func:`visgrpo.credit.vgpo.vgpo_token_advantages` (torch, CPU) against
``experiments/fidelity/references/vgpo.py`` (one token at a time, Python floats) on random
B x T responses (default B = 16, T = 1024, hidden D = 128, groups of 8, random lengths),
checks that they agree, and prints the speed-up (issue 5 target: >= 100x, on its
"hidden 512, 1,024 response tokens" config, hence D = 512 by default). Two figures:
``full`` (cosine focus + weights + advantages) and ``weights`` (from a given focus map, the
part without the D-dimensional dot products); the vectorised focus alone is timed too.
The loop's cost is dominated by the D-dimensional Python dot products, so the full ratio
grows with D; the vectorised weights are a few dozen small tensor ops (dispatch-bound, about
5-10x the loop), the vectorised focus is two memory-bound passes over the [B, T, D] states.
Loop inputs are converted to Python lists
before timing (conversion excluded); the vectorised side gets tensors. Times are medians of
process CPU time (``time.process_time``). Last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _reference():
    from experiments.fidelity.references import vgpo

    return vgpo


def _cpu(fn) -> float:
    """Process CPU seconds of one ``fn()`` (CPU time: on a shared machine the wall time also
    holds the waits for a core; both sides run on one thread).
    """
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _rounds(vec, loop, rounds: int, vec_reps: int) -> tuple[float, float, float]:
    """Interleaved rounds (``vec_reps`` vectorised calls, then one loop call): medians of the
    vectorised and loop times, and the median over rounds of loop / vectorised-median (the
    ratio within a round is less sensitive to load that drifts over the run).
    """
    vec_t, loop_t, ratios = [], [], []
    for _ in range(rounds):
        v = statistics.median(_cpu(vec) for _ in range(vec_reps))
        lp = _cpu(loop)
        vec_t.append(v)
        loop_t.append(lp)
        ratios.append(lp / v)
    return statistics.median(vec_t), statistics.median(loop_t), statistics.median(ratios)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round (1 loop call, 5 vectorised calls)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=512, help="D (issue 5's config: hidden 512)")
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = fair vs one Python thread)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="dtype of the timed vectorised run (the agreement check is float64)")
    p.add_argument("--out", help="write the JSON summary here too")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from visgrpo.credit.vgpo import vgpo_token_advantages, vgpo_weights, visual_focus

    ref = _reference()
    gen = torch.Generator().manual_seed(0)
    B, T, D = a.batch, a.length, a.hidden
    lengths = torch.randint(T // 4, T + 1, (B,), generator=gen)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    hidden = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    img = torch.randn(B, D, generator=gen, dtype=torch.float64)
    gids = torch.arange(B) // a.group
    adv = torch.randn(B, generator=gen, dtype=torch.float64)[:, None].expand(B, T).contiguous()
    focus = visual_focus(hidden, img, mask)  # [B, T]
    lists = (adv.tolist(), hidden.tolist(), img.tolist(), mask.tolist(), gids.tolist())
    focus_list = focus.tolist()

    rounds, vec_reps = (1, 5) if a.quick else (3, 10)
    dt = getattr(torch, a.dtype)
    adv_t, hidden_t, img_t, focus_t = adv.to(dt), hidden.to(dt), img.to(dt), focus.to(dt)
    vgpo_token_advantages(adv_t, hidden_t, img_t, mask, gids)  # warm-up
    vec_full, loop_full, speed_full = _rounds(
        lambda: vgpo_token_advantages(adv_t, hidden_t, img_t, mask, gids),
        lambda: ref.reference_vgpo(*lists), rounds, vec_reps)
    vec_w, loop_w, speed_w = _rounds(
        lambda: vgpo_weights(focus_t, mask, gids),
        lambda: ref.reference_weights(focus_list, lists[3], lists[4]), rounds, vec_reps)
    vec_focus = statistics.median(_cpu(lambda: visual_focus(hidden_t, img_t, mask)) for _ in range(vec_reps))

    out, _ = vgpo_token_advantages(adv, hidden, img, mask, gids)
    max_diff = float((out - torch.tensor(ref.reference_vgpo(*lists), dtype=torch.float64)).abs().max())
    summary = {
        "B": B, "T": T, "D": D, "threads": a.threads, "dtype": a.dtype,
        "vectorised_full_ms": vec_full * 1e3, "loop_full_ms": loop_full * 1e3,
        "speedup_full": speed_full,
        "vectorised_focus_ms": vec_focus * 1e3,
        "vectorised_weights_ms": vec_w * 1e3, "loop_weights_ms": loop_w * 1e3,
        "speedup_weights": speed_w,
        "max_abs_diff": max_diff, "target_speedup": 100.0,
        "meets_target": speed_full >= 100.0,
    }
    print(f"VGPO B={B} T={T} D={D} threads={a.threads} vectorised dtype={a.dtype}")
    print(f"  full:    vectorised {vec_full * 1e3:8.2f} ms   loop {loop_full * 1e3:9.1f} ms   "
          f"ratio {speed_full:7.1f}x (CPU time, median of {rounds} interleaved rounds)")
    print(f"  weights: vectorised {vec_w * 1e3:8.2f} ms   loop {loop_w * 1e3:9.1f} ms   "
          f"ratio {speed_w:7.1f}x")
    print(f"  focus (cosine over [B, T, D]): vectorised {vec_focus * 1e3:8.2f} ms")
    print(f"  max |vectorised - loop| = {max_diff:.2e}")
    if a.out:
        Path(a.out).write_text(json.dumps({"summary": summary}, indent=1) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
