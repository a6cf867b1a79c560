"""Vectorised VGPO credit vs a plain Python loop over the authors' equations.

``python experiments/bench/credit_vs_loop_bench.py [--quick] [--out results.json]``

Times :func:`visgrpo.credit.vgpo.vgpo_token_advantages` (torch, CPU) against
``tests/credit/vgpo_reference.py`` (one token at a time, Python floats) on random
B x T responses (default B = 16, T = 1024, hidden D = 128, groups of 8, random lengths),
checks that they agree, and prints the speed-up (issue 5 target: >= 100x). Two figures:
``full`` (cosine focus + weights + advantages) and ``weights`` (from a given focus map, the
part without the D-dimensional dot products). Loop inputs are converted to Python lists
before timing (conversion excluded); the vectorised side gets tensors. Last stdout line is
a JSON summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _reference():
    spec = importlib.util.spec_from_file_location("vgpo_reference", ROOT / "tests/credit/vgpo_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 loop repeat, 3 vectorised repeats")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=128)
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

    loop_reps, vec_reps = (1, 5) if a.quick else (3, 30)
    dt = getattr(torch, a.dtype)
    adv_t, hidden_t, img_t, focus_t = adv.to(dt), hidden.to(dt), img.to(dt), focus.to(dt)
    vgpo_token_advantages(adv_t, hidden_t, img_t, mask, gids)  # warm-up
    vec_full = _time(lambda: vgpo_token_advantages(adv_t, hidden_t, img_t, mask, gids), vec_reps)
    vec_w = _time(lambda: vgpo_weights(focus_t, mask, gids), vec_reps)
    loop_full = _time(lambda: ref.reference_vgpo(*lists), loop_reps)
    loop_w = _time(lambda: ref.reference_weights(focus_list, lists[3], lists[4]), loop_reps)

    out, _ = vgpo_token_advantages(adv, hidden, img, mask, gids)
    max_diff = float((out - torch.tensor(ref.reference_vgpo(*lists), dtype=torch.float64)).abs().max())
    summary = {
        "B": B, "T": T, "D": D, "threads": a.threads, "dtype": a.dtype,
        "vectorised_full_ms": vec_full * 1e3, "loop_full_ms": loop_full * 1e3,
        "speedup_full": loop_full / vec_full,
        "vectorised_weights_ms": vec_w * 1e3, "loop_weights_ms": loop_w * 1e3,
        "speedup_weights": loop_w / vec_w,
        "max_abs_diff": max_diff, "target_speedup": 100.0,
        "meets_target": loop_full / vec_full >= 100.0,
    }
    print(f"VGPO B={B} T={T} D={D} threads={a.threads} vectorised dtype={a.dtype}")
    print(f"  full:    vectorised {vec_full * 1e3:8.2f} ms   loop {loop_full * 1e3:9.1f} ms   "
          f"ratio {loop_full / vec_full:7.1f}x")
    print(f"  weights: vectorised {vec_w * 1e3:8.2f} ms   loop {loop_w * 1e3:9.1f} ms   "
          f"ratio {loop_w / vec_w:7.1f}x")
    print(f"  max |vectorised - loop| = {max_diff:.2e}")
    if a.out:
        Path(a.out).write_text(json.dumps({"summary": summary}, indent=1) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
