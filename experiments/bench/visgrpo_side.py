"""The visgrpo side: ``RLVRModule`` trained by a Lightning ``Trainer`` on the benchmark data.

This is the path ``visgrpo fit`` takes (EvidenceDataModule -> RLVRModule.training_step ->
HF-generate rollouts -> reward head -> one teacher-forced forward with the requested
signals -> credit methods -> DAPO objective -> backward -> AdamW), minus MLflow, checkpoints,
validation and the progress bar (the TRL side has none of these either).

Fixed amount of work per step: objective ``dapo`` with **dynamic sampling off** (every step
trains on exactly ``prompts_per_step x group_size`` responses, as TRL does; with it on, the
number of generation rounds would depend on the rewards) and **overlong shaping off** (TRL
has none, so both sides train on identical rewards; it would also push every truncated
response of a random model below EASE's reward gate). ``micro_batch_size = prompts_per_step x group_size``: one
forward/backward over the whole rollout batch, as TRL's single gradient-accumulation step;
``ppo_epochs = 1``, so the rollout log-probs come from the training forward (``fused``), as
in TRL with ``num_iterations = 1``. The same reward function as TRL's
(:func:`experiments.bench.harness.bench_reward`) is the reward head's only component.
"""

from __future__ import annotations

import time

from experiments.bench.harness import PROMPT_TEMPLATE, RunSpec, StepMeter, bench_reward

REWARD_PATH = "experiments.bench.visgrpo_side:bench_reward_batch"


def bench_reward_batch(completions: list[str], samples: list[dict], **kwargs) -> list[float]:
    """Visgrpo user reward (``module:function``): :func:`bench_reward` per completion."""
    return [bench_reward(c, s["answer"]) for c, s in zip(completions, samples, strict=True)]


def reward_specs():
    """The reward head's components: the benchmark reward, weight 1."""
    from visgrpo.rewards import RewardSpec

    return [RewardSpec(REWARD_PATH, 1.0)]


def build_credit(names: list[str]) -> list:
    """Credit methods by registry name, with their default (paper) settings."""
    import importlib

    from visgrpo.credit.base import CREDIT_METHODS

    for name in names:  # one module per method registers it (visgrpo/credit/<name>.py)
        importlib.import_module(f"visgrpo.credit.{name}")
    return [CREDIT_METHODS.get(name)() for name in names]


def build_module(spec: RunSpec):
    """``RLVRModule`` configured like the TRL peer (see the module docstring)."""
    from visgrpo.lightning.rlvr import RLVRModule
    from visgrpo.models.loading import PolicyConfig
    from visgrpo.objectives import ObjectiveOverrides
    from visgrpo.rollout import SamplingConfig

    n = spec.prompts_per_step * spec.group_size
    return RLVRModule(
        policy=PolicyConfig(spec.model_dir, dtype="float32", attn_implementation="sdpa"),
        objective="dapo",
        objective_overrides=ObjectiveOverrides(
            dynamic_sampling=False,
            overlong_shaping=False,  # TRL has none: identical rewards on both sides
        ),
        credit=build_credit(spec.credit),
        rewards=reward_specs(),
        sampling=SamplingConfig(
            temperature=spec.temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=spec.max_completion_length,
            num_generations=spec.group_size,
        ),
        rollout_engine="vllm" if spec.vllm else "hf",
        learning_rate=spec.learning_rate,
        weight_decay=0.0,
        warmup_steps=0,
        max_grad_norm=spec.max_grad_norm,
        micro_batch_size=n,
        ppo_epochs=1,
        seed=spec.seed,
    )


def build_datamodule(spec: RunSpec, module):
    from visgrpo.lightning.datamodule import EvidenceDataModule

    dm = EvidenceDataModule(
        train_path=spec.data_dir,
        batch_size=spec.prompts_per_step,
        prompt_template=PROMPT_TEMPLATE,
        require_evidence=True,
        seed=spec.seed,
    )
    dm.set_processor(module.processor)
    return dm


def build_trainer(spec: RunSpec, callbacks=()):
    import lightning as L

    return L.Trainer(
        accelerator="gpu" if spec.device.startswith("cuda") else "cpu",
        devices=1,
        max_steps=spec.warmup_steps + spec.measure_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=list(callbacks),
    )


def run_visgrpo(spec: RunSpec) -> dict:
    """Train ``warmup + measure`` steps with RLVRModule; the harness's result dict."""
    import lightning as L

    t0 = time.perf_counter()
    meter = StepMeter(spec.warmup_steps)
    rewards: list[float] = []

    class Meter(L.Callback):
        def on_train_start(self, trainer, pl_module):
            meter.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            ro, r = pl_module.last_rollout, pl_module.last_rewards
            if ro is None:
                meter.step_end(0, 0)
                return
            meter.step_end(int(ro.response_mask.sum()), ro.batch_size)
            if r is not None:
                rewards.append(float(r.float().mean()))

    module = build_module(spec)
    dm = build_datamodule(spec, module)
    trainer = build_trainer(spec, [Meter()])
    setup_s = time.perf_counter() - t0
    trainer.fit(module, datamodule=dm)
    extra = {"framework": "visgrpo"}
    if rewards:
        extra["mean_reward"] = sum(rewards) / len(rewards)
    return meter.result(spec, setup_s, extra)
