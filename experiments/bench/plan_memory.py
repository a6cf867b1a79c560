"""``visgrpo plan``'s memory estimate against the measured peak of real training steps on CPU.

``python -m experiments.bench.plan_memory [--repeats 3] [--jobs 1] [--out FILE]``

Each case is a small Qwen-VL of the real transformers class (``visgrpo.models.tiny``, wider
and deeper than the test model), loaded by ``load_policy`` in float32 on CPU (full
fine-tuning or LoRA, with or without gradient checkpointing). Every measurement runs in a
fresh subprocess (:func:`measure`): the HF engine samples G responses per prompt forced to
the full length T (as the RL step does), then two training steps run exactly as the fused
RL step's micro-step does (``policy_forward`` with grad and the step's signal request: the
diagnostics layer's attention probe, shared prefix, shared images; a policy-gradient loss;
backward; AdamW step; ``zero_grad(set_to_none=True)``). The measured peak is the growth of
the resident set (``VmHWM`` reset through ``/proc/self/clear_refs``) from just before the
steps (weights, rollout and processor resident; ``MALLOC_MMAP_THRESHOLD_=65536`` so freed
tensors leave the resident set) to the end of the second step, whose backward runs with
the optimiser state present. The estimate is what ``visgrpo plan`` prints for the same
shape, without the weights (resident before) and the rollout: gradients + optimiser +
activations + probe (:func:`visgrpo.plan.memory.plan_memory`). The weights are compared
exactly (bytes of the loaded parameters vs the meta-device count).

Reported per case: estimate, measured median [min, max] over ``--repeats`` processes, the
ratio estimate / measured and an A/A control (the spread of the measured repeats around
their median). Target: every ratio within 20%.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from experiments.bench.harness import (
    PROMPT_TEMPLATE,
    ROOT,
    loadavg,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    set_threads,
    synth_rows,
    worker_env,
)

MIB = 1024**2
TOKEN_PX = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}
#: (name, family, text hidden, layers, LoRA, gradient checkpointing, image tokens, G, T)
CASES = (
    ("2.5-VL full", "qwen2_5_vl", 256, 6, False, False, 64, 4, 192),
    ("2.5-VL LoRA", "qwen2_5_vl", 256, 6, True, False, 64, 4, 192),
    ("2.5-VL full GC", "qwen2_5_vl", 256, 6, False, True, 64, 4, 192),
    ("3-VL LoRA", "qwen3_vl", 256, 6, True, False, 64, 4, 192),
)


def measure(spec: dict) -> dict:
    """One measurement (run it in a fresh process: the peak resident set is the process's own)."""
    import torch
    from transformers.generation.utils import GenerationMixin

    from visgrpo.attention.forward import policy_forward
    from visgrpo.data.geometry import processor_geometry
    from visgrpo.data.signals import SignalRequest
    from visgrpo.lightning.data import PromptCollator
    from visgrpo.models.loading import PolicyConfig, load_policy
    from visgrpo.models.lora import LoraSettings
    from visgrpo.models.tiny import build_tiny
    from visgrpo.plan.memory import StepShape, plan_memory
    from visgrpo.plan.model import model_facts
    from visgrpo.rollout import HFRolloutEngine, SamplingConfig

    set_threads(1)
    torch.manual_seed(0)
    fam, N, G, T = spec["family"], spec["image_tokens"], spec["G"], spec["T"]
    generate = GenerationMixin.generate

    def forced(self, *args, **kwargs):  # every response runs to T tokens (EOS cannot end it)
        kwargs["min_new_tokens"] = T
        return generate(self, *args, **kwargs)

    GenerationMixin.generate = forced
    px = TOKEN_PX[fam]
    with tempfile.TemporaryDirectory(prefix="plan-memory-") as tmp:
        path = Path(tmp) / "model"
        corpus = [PROMPT_TEMPLATE.format(question=r["question"]) for r in synth_rows(8)]
        build_tiny(fam, path, corpus=corpus, min_pixels=N * px * px, max_pixels=N * px * px,
                   hidden_size=spec["hidden"], num_layers=spec["layers"], vision_depth=2, vision_hidden=64)
        policy = PolicyConfig(str(path), lora=LoraSettings() if spec["lora"] else None,
                              gradient_checkpointing=spec["checkpointing"])
        model, processor = load_policy(policy)
        facts = model_facts(policy)
    collate = PromptCollator(processor, processor_geometry(processor), PROMPT_TEMPLATE, None)
    prompts = collate(synth_rows(spec["prompts"], seed=1, size=math.isqrt(N) * px))
    sampling = SamplingConfig(max_new_tokens=T, num_generations=G, temperature=1.0)
    rollout = HFRolloutEngine().generate(model, processor, prompts, sampling, seed=0)
    if not rollout.response_mask.all():
        raise RuntimeError("plan_memory: responses not forced to full length")
    P = int(rollout.prompt_length)
    layer = facts.text.layers - 1
    request = SignalRequest(image_attention_layers=frozenset({layer}))  # the diagnostics probe
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    advantages = torch.randn(rollout.response_mask.shape[0], 1)
    shape = StepShape(prompts=spec["prompts"], G=G, prompt_tokens=P, response_tokens=T, image_tokens=N,
                      micro_batch_size=G * spec["prompts"], checkpointing=spec["checkpointing"],
                      padded=bool((rollout.attention_mask == 0).any()), probe_layers=1, device="cpu")
    plan = plan_memory(facts, shape, 1, False, 80 * 1024**3)
    estimate = sum(plan.rows[k] for k in ("gradients", "optimiser", "activations", "probe"))
    import gc

    gc.collect()
    before = rss_mb()
    reset_peak_rss()
    for _ in range(2):
        out = policy_forward(model, rollout, request)
        loss = -(out.logp * advantages * out.response_mask).sum() / out.response_mask.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del out, loss
    measured = (peak_rss_mb() - before) * MIB
    loaded = sum(p.numel() * p.element_size() for p in model.parameters())
    return dict(spec, estimate=estimate, measured=measured, weights_estimate=facts.weight_bytes,
                weights_loaded=loaded, prompt_tokens=P, padded=shape.padded,
                rows={k: v for k, v in plan.rows.items() if v})


def measure_in_subprocess(spec: dict) -> dict:
    """:func:`measure` in a fresh Python process (one torch thread, mmap for blocks >= 64 KiB)."""
    env = worker_env(1)
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    code = ("import json, sys; from experiments.bench.plan_memory import measure; "
            "print('RESULT ' + json.dumps(measure(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"plan_memory worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def spec_of(case: tuple, prompts: int = 1) -> dict:
    name, family, hidden, layers, lora, gc_on, N, G, T = case
    return dict(name=name, family=family, hidden=hidden, layers=layers, lora=lora, checkpointing=gc_on,
                image_tokens=N, G=G, T=T, prompts=prompts)


def summarise(results: list[dict]) -> dict:
    measured = [r["measured"] for r in results]
    med = statistics.median(measured)
    first = results[0]
    return dict(name=first["name"], estimate=first["estimate"], median=med, low=min(measured), high=max(measured),
                ratio=first["estimate"] / med, aa=(min(measured) / med, max(measured) / med),
                weights=(first["weights_estimate"], first["weights_loaded"]), prompt_tokens=first["prompt_tokens"])


def table(rows: list[dict], repeats: int, load: tuple) -> str:
    head = ("# visgrpo plan: estimated vs measured peak memory of training steps (CPU, float32)\n\n"
            f"`python -m experiments.bench.plan_memory --repeats {repeats}`; each case {repeats} fresh processes; "
            "measured = growth of the peak resident set over two training steps (gradients, AdamW state, "
            "activations, probe); estimate = the same rows of `visgrpo plan`. A/A = min and max of the "
            f"repeats over their median. Load average before / after: {load[0]} / {load[1]}.\n\n"
            "| case | prompt tokens | weights est / loaded (MiB) | estimate (MiB) | measured median [min, max] (MiB) "
            "| estimate / measured | A/A [min, max] |\n|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['name']} | {r['prompt_tokens']} | {r['weights'][0] / MIB:.1f} / {r['weights'][1] / MIB:.1f} | "
        f"{r['estimate'] / MIB:.1f} | {r['median'] / MIB:.1f} [{r['low'] / MIB:.1f}, {r['high'] / MIB:.1f}] | "
        f"{r['ratio']:.3f} | [{r['aa'][0]:.3f}, {r['aa'][1]:.3f}] |\n" for r in rows)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    return head + body + f"\nLargest deviation: {100 * worst:.1f}% (target: within 20%).\n"


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from visgrpo.evaluation.report import write_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1,
                        help="measurements run at once (each in its own process, so each peak is its own)")
    parser.add_argument("--out", default="runs/bench/plan_memory.md",
                        help="markdown report; default under runs/, so the committed "
                        "experiments/bench/results/plan_memory.md changes only when named")
    args = parser.parse_args(argv)
    load_before = loadavg()
    runs = [(i, spec_of(case)) for i, case in enumerate(CASES) for _ in range(args.repeats)]
    results: dict[int, list[dict]] = {i: [] for i in range(len(CASES))}
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = {pool.submit(measure_in_subprocess, spec): i for i, spec in runs}
        for future in tqdm(as_completed(futures), total=len(futures), desc="measurements"):
            results[futures[future]].append(future.result())
    rows = [summarise(results[i]) for i in range(len(CASES))]
    text = table(rows, args.repeats, (load_before, loadavg()))
    write_atomic(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
