"""Peak CPU memory of token log-probs + entropy (forward + backward): chunked vs unchunked.

Each variant runs in a fresh subprocess; the peak is the growth of the process's maximum
resident set size (``ru_maxrss``) from just after the inputs (bf16 logits that require grad,
labels) are allocated and touched, to the end of ``backward``. Both variants also allocate
the bf16 gradient of the logits. Runs in well under 30 s on 2 CPU cores with the defaults.

Usage: python -m experiments.bench.logprob_memory [--rows 2048] [--vocab 32768] [--chunk 256]

Recorded on the dev box (2 CPU cores, torch 2.14 CPU), defaults:
    unchunked: peak +1287 MiB (~5 float32 copies of [rows, V] at 256 MiB each)
      chunked: peak +234 MiB  (128 MiB bf16 logits grad + a few [256, V] float32 buffers)
    ratio 5.5x
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _run(variant: str, rows: int, vocab: int, chunk: int) -> dict[str, float]:
    import torch

    from visgrpo.objectives import token_logprobs_and_entropy

    torch.manual_seed(0)
    B = 4
    T = rows // B
    logits = torch.randn(B, T, vocab, dtype=torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, vocab, (B, T))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    if variant == "chunked":
        logp, ent = token_logprobs_and_entropy(logits, labels, chunk_size=chunk)
    else:
        lp = torch.log_softmax(logits.float(), dim=-1)  # [B, T, V] float32
        logp = lp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        ent = -(lp.exp() * lp).sum(-1)
    (logp.sum() + ent.sum()).backward()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": (after - before) / 1024, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=2048, help="B*T positions (B = 4)")
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--variant", choices=["chunked", "unchunked"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:
        print(json.dumps(_run(a.variant, a.rows, a.vocab, a.chunk)))
        return
    res = {}
    for variant in ("unchunked", "chunked"):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--rows",
            str(a.rows),
            "--vocab",
            str(a.vocab),
            "--chunk",
            str(a.chunk),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res[variant] = json.loads(out.strip().splitlines()[-1])
    fp32_full = a.rows * a.vocab * 4 / 2**20
    bf16_grad = a.rows * a.vocab * 2 / 2**20
    print(
        f"rows={a.rows} vocab={a.vocab} chunk={a.chunk}  "
        f"(one full fp32 [rows, V] = {fp32_full:.0f} MiB, bf16 grad = {bf16_grad:.0f} MiB)"
    )
    for variant, r in res.items():
        print(f"{variant:>10}: peak +{r['peak_mib']:.0f} MiB  ({r['seconds']:.2f} s)")
    ratio = res["unchunked"]["peak_mib"] / max(res["chunked"]["peak_mib"], 1e-9)
    print(f"peak ratio unchunked / chunked = {ratio:.1f}x")


if __name__ == "__main__":
    main()
