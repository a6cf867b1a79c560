"""Attention probe vs ``output_attentions=True`` (eager): peak memory and time, CPU.

Model: a random-weight Qwen2.5-VL built from a config (no checkpoint, no tokenizer):
text decoder with ``--layers`` layers (default 8), hidden 512, 8 query / 2 key-value heads
(head_dim 64), vocabulary 1,000 (``--model tiny``: the test models' text sizes, hidden 64,
4 query / 2 key-value heads of 16, 4 layers); a one-block vision tower (window attention only, so its
transient memory stays far below the text model's). The input is REAL image tokens: one
image with ``image_grid_thw = (1, 2g, 2g)`` patches gives g*g merged tokens
(``--image-tokens`` = g*g, default 1,024), ``pixel_values`` random, then ``--response``
response tokens (default 1,024), i.e. L = image + response + 16 text tokens.

Configurations, each in a fresh subprocess (peak RSS is per process):
  sdpa         text model with SDPA, no attention output (the baseline)
  probe_all    SDPA + the probe on every layer: head-averaged response x image attention
  probe_one    SDPA + the probe on one layer (the last; what SAYO / EASE use)
  eager        eager attention, no attention output (eager's own baseline)
  eager_attn   eager with output_attentions=True (all layers, all heads, L x L)
All run the decoder forward (``model.model``) under ``torch.no_grad``.

Peak memory: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs
just before the forward) minus its resident set before the forward, after one unmeasured
warm-up forward and with the previous forward's outputs freed, with glibc's mmap threshold
fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the resident set. "Extra" of a
configuration = its peak minus the sdpa baseline's peak. Time: wall clock of the forward
(best of ``--repeats``), on whatever cores ``--threads`` allows.

Run: ``python -m experiments.bench.probe_memory_bench [--model tiny] [--quick]``; writes
``experiments/bench/results/probe.json`` (``results/probe_tiny.json`` with ``--model tiny``,
``_quick`` added with --quick).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ("sdpa", "probe_all", "probe_one", "eager", "eager_attn")
IMAGE_ID, VSTART_ID, VEND_ID, VIDEO_ID = 999, 998, 997, 996


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


# Text-model sizes: "bench" (hidden 512, 8 query / 2 key-value heads of 64) and "tiny"
# (the test models of visgrpo.models.tiny: hidden 64, 4 query / 2 key-value heads of 16).
MODELS = {
    "bench": dict(hidden=512, intermediate=1024, heads=8, kv_heads=2, mrope=[8, 12, 12]),
    "tiny": dict(hidden=64, intermediate=128, heads=4, kv_heads=2, mrope=[2, 3, 3]),
}


def _build(model: str, layers: int, impl: str):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    dims = MODELS[model]
    text = dict(
        vocab_size=1000,
        hidden_size=dims["hidden"],
        intermediate_size=dims["intermediate"],
        num_hidden_layers=layers,
        num_attention_heads=dims["heads"],
        num_key_value_heads=dims["kv_heads"],
        max_position_embeddings=8192,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": dims["mrope"],
        },
    )
    vision = dict(
        depth=1,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        out_hidden_size=dims["hidden"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[],
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_ID,
        video_token_id=VIDEO_ID,
        vision_start_token_id=VSTART_ID,
        vision_end_token_id=VEND_ID,
        attn_implementation=impl,
    )
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    return model


def _inputs(image_tokens: int, response: int):
    import torch

    g = math.isqrt(image_tokens)
    if g * g != image_tokens:
        raise SystemExit(f"--image-tokens must be a square, got {image_tokens}")
    gen = torch.Generator().manual_seed(0)
    pre = torch.randint(0, 900, (8,), generator=gen)
    post = torch.randint(0, 900, (6,), generator=gen)
    resp = torch.randint(0, 900, (response,), generator=gen)
    ids = torch.cat(
        [
            pre,
            torch.tensor([VSTART_ID]),
            torch.full((image_tokens,), IMAGE_ID),
            torch.tensor([VEND_ID]),
            post,
            resp,
        ]
    )[None]  # [1, L]
    grid = torch.tensor([[1, 2 * g, 2 * g]])
    pixels = torch.randn(4 * image_tokens, 3 * 2 * 14 * 14, generator=gen)
    P = ids.shape[1] - response
    return dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=pixels,
        image_grid_thw=grid,
        mm_token_type_ids=(ids == IMAGE_ID).long(),
    ), P


def run_one(name: str, args) -> dict:
    """Measure one configuration in this process."""
    import torch

    torch.set_num_threads(args.threads)
    from visgrpo.attention.probe import AttentionProbe

    model = _build(args.model, args.layers, "eager" if name.startswith("eager") else "sdpa")
    inputs, P = _inputs(args.image_tokens, args.response)
    T = args.response
    rows = (P - 1 + torch.arange(T))[None]  # [1, T]
    cols = (inputs["input_ids"][0] == IMAGE_ID).nonzero()[:, 0][None]  # [1, N]
    layers = list(range(args.layers)) if name == "probe_all" else [args.layers - 1]
    times, extra_kb, kept = [], 0, 0
    for i in range(args.repeats + 1):  # iteration 0 is an unmeasured warm-up
        # The previous iteration's outputs (the probe's results, eager's attention maps)
        # are freed before the baseline is read, so they are not counted in it.
        out = probe = None
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        with torch.no_grad():
            if name.startswith("probe"):
                with AttentionProbe(model, layers, rows, cols, chunk_size=args.chunk) as probe:
                    out = model.model(**inputs, use_cache=False)
                kept = sum(t.numel() * t.element_size() for t in probe.image_attention.values())
            else:
                out = model.model(**inputs, use_cache=False, output_attentions=name == "eager_attn")
                if name == "eager_attn":
                    kept = sum(a.numel() * a.element_size() for a in out.attentions)
        if i > 0:
            times.append(time.perf_counter() - t0)
            extra_kb = max(extra_kb, _rss_kb("VmHWM") - base)
    del out, probe
    return dict(
        config=name,
        L=int(inputs["input_ids"].shape[1]),
        peak_delta_mb=extra_kb / 1024,
        attention_kept_mb=kept / 2**20,
        seconds=min(times),
    )


def default_out(model: str, quick: bool) -> Path:
    """The JSON written without ``--out``: under ``runs/bench/`` (the committed
    ``experiments/bench/results/probe*.json`` only when named).
    """
    return Path("runs/bench") / f"results_probe{'_tiny' if model == 'tiny' else ''}{'_quick' if quick else ''}.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="4 layers, 256 image / 256 response tokens"
    )
    ap.add_argument("--model", choices=sorted(MODELS), default="bench",
                    help="text-model size: bench (hidden 512, 8/2 heads) or tiny (hidden 64, 4/2 heads)")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default: bench 8, tiny 4)")
    ap.add_argument("--image-tokens", type=int, default=1024)
    ap.add_argument("--response", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=256, help="probe query rows per chunk")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.layers is None:
        args.layers = 8 if args.model == "bench" else 4
    if args.quick:
        args.layers, args.image_tokens, args.response = 4, 256, 256
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return

    rows = []
    for name in CONFIGS:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--model",
            args.model,
            "--layers",
            str(args.layers),
            "--image-tokens",
            str(args.image_tokens),
            "--response",
            str(args.response),
            "--chunk",
            str(args.chunk),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        # Fixed mmap threshold: large blocks are mmapped and returned on free, so RSS
        # follows live tensors (glibc's dynamic threshold would keep freed blocks).
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(f"{name} failed:\n{res.stderr[-3000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"  done {name}: {rows[-1]}", flush=True)
    dims = MODELS[args.model]
    base = {r["config"]: r for r in rows}
    for r in rows:
        r["extra_vs_sdpa_mb"] = r["peak_delta_mb"] - base["sdpa"]["peak_delta_mb"]
    probe_x, eager_x = base["probe_all"]["extra_vs_sdpa_mb"], base["eager_attn"]["extra_vs_sdpa_mb"]
    summary = dict(
        probe_all_extra_over_eager_attn_extra=probe_x / eager_x if eager_x > 0 else None,
        target="<= 0.1",
    )
    print(
        f"\nL = {rows[0]['L']} ({args.image_tokens} image + {args.response} response tokens), "
        f"{args.layers} layers, hidden {dims['hidden']}, {dims['heads']}/{dims['kv_heads']} heads, "
        f"{args.threads} threads"
    )
    print(
        f"{'config':<12}{'peak delta MB':>15}{'extra vs sdpa MB':>18}{'attn kept MB':>14}{'s':>8}"
    )
    for r in rows:
        print(
            f"{r['config']:<12}{r['peak_delta_mb']:>15.1f}{r['extra_vs_sdpa_mb']:>18.1f}"
            f"{r['attention_kept_mb']:>14.1f}{r['seconds']:>8.2f}"
        )
    print(
        f"probe (all layers) extra / eager output_attentions extra = "
        f"{summary['probe_all_extra_over_eager_attn_extra']:.4f} (target {summary['target']})"
    )
    out = Path(args.out) if args.out else default_out(args.model, args.quick)
    meta = dict(
        model=args.model,
        layers=args.layers,
        hidden=dims["hidden"],
        heads=dims["heads"],
        kv_heads=dims["kv_heads"],
        image_tokens=args.image_tokens,
        response_tokens=args.response,
        chunk=args.chunk,
        threads=args.threads,
        repeats=args.repeats,
        python=platform.python_version(),
        machine=platform.machine(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, rows=rows, summary=summary), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
