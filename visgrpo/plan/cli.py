"""``visgrpo plan --config ...``: parameters and per-GPU memory of a recipe's RL step, per GPU count.

Takes the same ``--config`` files and flags as ``visgrpo fit`` (they are parsed by the same
parser, nothing is built), plus the plan's own options below. Prints the parameters (total,
trainable; LoRA/QLoRA included), the step's shape, the estimated memory per GPU for each GPU
count (:mod:`visgrpo.plan.memory`), the activations with and without gradient checkpointing,
the rollout tokens per step, and a warning wherever the peak does not fit.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from visgrpo.lightning.errors import ConfigError
from visgrpo.plan.memory import GIB, MemoryPlan, StepShape, activation_bytes, plan_memory
from visgrpo.plan.model import ModelFacts, model_facts
from visgrpo.plan.recipe import Recipe, read_recipe, signal_request

CUDA_CONTEXT_GIB = 1.0  # CUDA context + allocator slack per GPU (typical for an H100 with torch)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visgrpo plan",
        description="Estimate per-GPU memory of a recipe's RL step before running it. Every other "
                    "argument (--config FILE, --model.init_args.micro_batch_size=4, ...) is read as by "
                    "`visgrpo fit`.",
    )
    p.add_argument("--gpus", default="1,2,4,8", help="GPU counts to plan for, comma-separated (default 1,2,4,8)")
    p.add_argument("--gpu-memory", type=float, default=80.0,
                   help="memory of one GPU in GiB (default 80; an 80 GB H100 has about 79)")
    p.add_argument("--strategy", choices=("auto", "ddp", "fsdp"), default="auto",
                   help="replicate (ddp) or shard (fsdp) weights, gradients and optimiser state; auto: the "
                        "config's trainer.strategy (fsdp/model-parallel shard, anything else replicates)")
    p.add_argument("--image-tokens", type=int, default=None,
                   help="visual tokens per prompt (default: 3/4 of data.max_prompt_tokens)")
    p.add_argument("--unpadded", action="store_true",
                   help="rows have equal lengths (SDPA's GQA path; default: padded rows)")
    return p


def _gpus(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise ConfigError("--gpus", f"expected positive integers separated by commas, got {text!r}")
    return out


def step_shape(recipe: Recipe, facts: ModelFacts, image_tokens: int | None, padded: bool) -> StepShape:
    """The :class:`StepShape` of ``recipe`` on one rank."""
    req = signal_request(recipe, facts.text.layers)
    N = image_tokens if image_tokens is not None else max(1, recipe.prompt_tokens * 3 // 4)
    probed = req.image_attention_layers | req.grad_attention_layers | req.own_attention_layers
    return StepShape(
        prompts=recipe.prompts, G=recipe.G, prompt_tokens=recipe.prompt_tokens,
        response_tokens=recipe.response_tokens, image_tokens=N, micro_batch_size=recipe.micro_batch_size,
        share_prefix=recipe.share_prefix, checkpointing=recipe.policy.gradient_checkpointing, padded=padded,
        probe_layers=len(probed), grad_probe_layers=len(req.grad_attention_layers),
        response_probe_layers=len(req.response_attention_layers), masked_forward=req.masked_logp is not None,
        reference=recipe.kl, reference_copy=recipe.kl and recipe.policy.lora is None, engine=recipe.engine,
        vllm_share=recipe.vllm_share, logprob_chunk=recipe.logprob_chunk, probe_chunk=recipe.probe_chunk,
    )


def _gib(n: float) -> str:
    return f"{n / GIB:8.2f}"


def render(recipe: Recipe, facts: ModelFacts, shape: StepShape, plans: list[MemoryPlan], sharded: bool,
           gpu_memory: float) -> str:
    """The plan as text (one column per GPU count, GiB per GPU)."""
    p = recipe.policy
    kind = ("QLoRA " + p.quantization if p.quantization else "LoRA") if p.lora else "full fine-tuning"
    lora = f" r={p.lora.r} {p.lora.target_modules}{' +vision' if p.lora.include_vision else ''}" if p.lora else ""
    lines = [
        f"model      {facts.name} ({facts.family}, {p.dtype}, {kind}{lora})",
        f"parameters {facts.total_params:,} total, {facts.trainable_params:,} trainable "
        f"({100 * facts.trainable_params / max(facts.total_params, 1):.2f}%)",
        f"credit     {', '.join(recipe.credit_names) or 'none'}; KL {'on' if recipe.kl else 'off'}; "
        f"rollout engine {recipe.engine}",
        f"step       {shape.prompts} prompts x G={shape.G} per GPU; P={shape.prompt_tokens} prompt tokens "
        f"(image tokens {shape.image_tokens}, --image-tokens), T={shape.response_tokens}; micro-batch "
        f"{shape.micro_rows} rows = {shape.forward_tokens():,} decoder tokens"
        f"{' (shared prefix)' if shape.share_prefix else ''}",
        f"probe      {shape.probe_layers} layer(s) ({shape.grad_probe_layers} with grad, "
        f"{shape.response_probe_layers} response x response); masked-image forward "
        f"{'yes' if shape.masked_forward else 'no'}; gradient checkpointing "
        f"{'on' if shape.checkpointing else 'off'}; {'FSDP (sharded)' if sharded else 'DDP (replicated)'}",
        "",
        f"{'GiB per GPU':<26}" + "".join(f"{f'{pl.gpus} GPU':>9}" for pl in plans),
    ]
    for name in plans[0].rows:
        lines.append(f"{name:<26}" + "".join(_gib(pl.rows[name]) + " " for pl in plans))
    other = replace(shape, checkpointing=not shape.checkpointing)
    label = f"activations ({'without' if shape.checkpointing else 'with'} GC)"
    lines.append(f"{label:<26}" + "".join(_gib(activation_bytes(facts, other)) + " " for _ in plans))
    lines.append(f"{'runtime (CUDA context)':<26}" + "".join(_gib(CUDA_CONTEXT_GIB * GIB) + " " for _ in plans))
    lines.append(f"{'peak':<26}" + "".join(_gib(pl.peak) + " " for pl in plans))
    lines.append(f"{'fits ' + format(gpu_memory / GIB, 'g') + ' GiB':<26}"
                 + "".join(f"{'yes' if pl.peak <= gpu_memory else 'NO':>8} " for pl in plans))
    lines.append(f"{'rollout tokens / step':<26}" + "".join(f"{pl.rollout_tokens:>8,} " for pl in plans))
    warns = [w for pl in plans for w in pl.warnings]
    lines += [""] + [f"warning: {w}" for w in warns]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    """``visgrpo plan``: print the plan; user errors raise (``visgrpo.cli`` prints them in one line)."""
    opts, rest = _parser().parse_known_args(argv)
    gpus = _gpus(opts.gpus)
    recipe = read_recipe(rest)
    facts = model_facts(recipe.policy)
    shape = step_shape(recipe, facts, opts.image_tokens, not opts.unpadded)
    strategy = recipe.strategy.lower() if opts.strategy == "auto" else opts.strategy
    sharded = "fsdp" in strategy or "modelparallel" in strategy
    gpu_memory = opts.gpu_memory * GIB
    plans = [plan_memory(facts, shape, n, sharded, gpu_memory, CUDA_CONTEXT_GIB * GIB) for n in gpus]
    print(render(recipe, facts, shape, plans, sharded, gpu_memory), end="")
    return 0
