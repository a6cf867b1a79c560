"""The peer: TRL's ``GRPOTrainer`` on the same tiny model, data and settings as visgrpo.

Fair-comparison settings (each matches the visgrpo side, see experiments/bench/README.md):

* same model directory, loaded in float32 with SDPA attention, same processor;
* same prompts: the dataset rows' question in the same template, one image before the text,
  the same chat template and default system turn (TRL renders the conversational prompt);
* ``per_device_train_batch_size = prompts_per_step * group_size`` completions,
  ``num_generations = group_size``, ``gradient_accumulation_steps = 1`` (one generation and
  one optimiser step per step, so no extra "old log-prob" pass: the same fused on-policy
  step visgrpo runs);
* ``loss_type="dapo"`` with ``epsilon=0.2, epsilon_high=0.28`` (DAPO clip-higher, token-mean
  aggregation), ``scale_rewards="group"`` (GRPO advantage), ``beta=0`` (no reference model),
  ``num_iterations=1``, ``mask_truncated_completions=False``;
* sampling ``temperature``, ``top_p=1``, ``top_k=0``, ``max_completion_length``, and the same
  stop tokens (EOS and pad, as visgrpo's engine);
* AdamW (``adamw_torch``, betas 0.9/0.999, eps 1e-8, weight decay 0), constant learning rate,
  gradient clipping at ``max_grad_norm``;
* ``gradient_checkpointing=False`` (TRL's default is True; visgrpo's is off), ``bf16=False``,
  no vLLM unless ``--vllm``, no eval, nothing saved, ``report_to="none"``, logging off,
  no progress bar, ``dataloader_num_workers=0``.

The reward is :func:`experiments.bench.harness.bench_reward` (the visgrpo side scores with
the same function through its reward head).
"""

from __future__ import annotations

import tempfile
import time

from experiments.bench.harness import PROMPT_TEMPLATE, RunSpec, StepMeter, bench_reward


def choice_reward(completions, answer, **kwargs) -> list[float]:
    """TRL reward function: :func:`bench_reward` of each completion's text."""
    out = []
    for comp, gold in zip(completions, answer, strict=True):
        text = comp[-1]["content"] if isinstance(comp, list) else str(comp)
        if isinstance(text, list):  # structured content blocks
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        out.append(bench_reward(text, gold))
    return out


def trl_dataset(data_dir: str):
    """The evidence dataset as a TRL vision-language dataset: ``prompt`` (conversational) + ``image``."""
    from visgrpo.data.io import load_dataset_dir

    ds, _ = load_dataset_dir(data_dir)

    def to_trl(row: dict) -> dict:
        text = PROMPT_TEMPLATE.format(question=row["question"])
        return {"prompt": [{"role": "user", "content": text}]}

    keep = ["image", "answer", "prompt"]
    ds = ds.map(to_trl)
    return ds.remove_columns([c for c in ds.column_names if c not in keep])


def grpo_config(spec: RunSpec, output_dir: str):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir,
        max_steps=spec.warmup_steps + spec.measure_steps,
        per_device_train_batch_size=spec.prompts_per_step * spec.group_size,
        gradient_accumulation_steps=1,
        num_generations=spec.group_size,
        max_completion_length=spec.max_completion_length,
        temperature=spec.temperature,
        top_p=1.0,
        top_k=0,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=spec.max_grad_norm,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        scale_rewards="group",
        num_iterations=1,
        mask_truncated_completions=False,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=spec.device == "cpu",
        use_vllm=spec.vllm,
        vllm_mode="colocate",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
        seed=spec.seed,
    )


def build_trainer(spec: RunSpec, output_dir: str, callbacks=()):
    """``(trainer, token_log)``: a GRPOTrainer for ``spec``; ``token_log`` receives the
    completion-token count of every generation batch.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOTrainer

    model = AutoModelForImageTextToText.from_pretrained(
        spec.model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    processor = AutoProcessor.from_pretrained(spec.model_dir, padding_side="left")
    # Stop on the same tokens as visgrpo's engine (visgrpo.rollout.vision.eos_token_ids: the
    # tokenizer's EOS and pad); TRL takes every EOS id the model's generation config declares.
    tok = processor.tokenizer
    stops = {tok.eos_token_id, tok.pad_token_id}
    declared = model.generation_config.eos_token_id
    stops.update([declared] if isinstance(declared, int) else list(declared or []))
    model.generation_config.eos_token_id = sorted(i for i in stops if i is not None)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=choice_reward,
        args=grpo_config(spec, output_dir),
        train_dataset=trl_dataset(spec.data_dir),
        processing_class=processor,
        callbacks=list(callbacks),
    )
    token_log: list[int] = []
    trainer.bench_rewards = []  # (mean reward, fraction of groups with zero reward std) per batch
    generate = trainer._generate_and_score_completions

    def counted(inputs):
        out = generate(inputs)
        token_log.append(int(out["completion_mask"].sum()))
        m = trainer._metrics["train"]
        if m.get("reward"):
            trainer.bench_rewards.append((m["reward"][-1], m["frac_reward_zero_std"][-1]))
        return out

    trainer._generate_and_score_completions = counted
    return trainer, token_log


def run_trl(spec: RunSpec) -> dict:
    """Train ``warmup + measure`` steps with GRPOTrainer; the harness's result dict."""
    from transformers import TrainerCallback

    t0 = time.perf_counter()
    meter = StepMeter(spec.warmup_steps)
    samples = spec.prompts_per_step * spec.group_size
    holder: dict = {}

    class Meter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            meter.start()

        def on_step_end(self, args, state, control, **kwargs):
            log = holder["tokens"]
            meter.step_end(log[-1] if log else 0, samples)

    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        trainer, holder["tokens"] = build_trainer(spec, out, [Meter()])
        setup_s = time.perf_counter() - t0
        trainer.train()
    extra: dict = {"framework": "trl"}
    if trainer.bench_rewards:
        n = len(trainer.bench_rewards)
        extra["mean_reward"] = sum(r for r, _ in trainer.bench_rewards) / n
        extra["frac_groups_zero_std"] = sum(z for _, z in trainer.bench_rewards) / n
    return meter.result(spec, setup_s, extra)
