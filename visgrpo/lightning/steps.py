"""Pieces of the RL step that do not need the module's internals: rollout collection with
DAPO dynamic sampling and overlong shaping, and metric reduction over micro-batches."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from visgrpo.data.batch import RolloutBatch
from visgrpo.data.fields import EVIDENCE_FIELDS
from visgrpo.objectives import dynamic_sampling_filter, overlong_penalty


def overlong_cache(max_len: int, cache_len: int) -> int:
    """The overlong cache ``L_c`` used with a generation budget ``max_len``.

    The preset's ``cache_len`` when it fits (``<= max_len``); otherwise DAPO's proportion
    (4096 of 20480 = 1/5 of the budget), at least 1 token.
    """
    return cache_len if 0 < cache_len <= max_len else max(1, round(0.2 * max_len))


def score(module, rollout: RolloutBatch) -> tuple[Tensor, dict[str, Tensor]]:
    """Outcome rewards [B] (reward head + DAPO overlong shaping) and their metrics."""
    out = module.reward_head(rollout.completions, rollout.samples)
    rewards = out.total.to(torch.float32)  # [B]
    metrics = {f"reward/{k}": v.float().mean() for k, v in out.components.items()}
    cfg = module.objective
    if cfg.overlong_shaping:
        lengths = rollout.response_mask.sum(-1).cpu()  # [B]
        max_len = module.sampling.max_new_tokens
        penalty = overlong_penalty(lengths, max_len, overlong_cache(max_len, cfg.overlong_cache_length))
        rewards = rewards + penalty.to(rewards)
        metrics["reward/overlong"] = penalty.float().mean()
    metrics["reward/outcome"] = rewards.mean()
    return rewards, metrics


def collect_rollouts(module, batch) -> tuple[RolloutBatch | None, Tensor | None, dict[str, float]]:
    """Sample, score and (for DAPO) filter rollouts until the batch is full.

    Returns ``(rollout, rewards [B], metrics)``; ``rollout`` is ``None`` when every group was
    dropped in every round (the step is then skipped and counted).
    """
    cfg = module.objective
    target_groups = len(batch.prompts)
    kept: list[RolloutBatch] = []
    kept_rewards: list[Tensor] = []
    metrics: dict[str, float] = defaultdict(float)
    group_offset = 0
    rounds = 0
    prompts = batch
    while True:
        rounds += 1
        rollout = module.engine.generate(
            module.policy, module.processor, prompts, module.sampling,
            seed=module.hparams.seed * 1_000_003 + module.global_step * 101 + rounds,
        ).to(module.device)
        rollout.group_ids = rollout.group_ids + group_offset
        group_offset = int(rollout.group_ids.max()) + 1
        rewards, m = score(module, rollout)
        for k, v in m.items():
            metrics[k] = float(v) if rounds == 1 else metrics[k]
        metrics["rollout/response_length"] = float(rollout.response_mask.sum(-1).float().mean())
        metrics["rollout/truncated"] = float(rollout.truncated.float().mean())
        if not cfg.dynamic_sampling:
            return rollout, rewards.to(module.device), dict(metrics)
        keep, fm = dynamic_sampling_filter(rewards, rollout.group_ids, atol=cfg.dynamic_sampling_atol)
        metrics["dapo/groups_dropped"] += float(fm.get("groups_dropped", 0))
        metrics["dapo/groups_total"] += float(fm.get("groups_total", 0))
        if bool(keep.any()):
            idx = keep.nonzero().squeeze(-1)
            kept.append(rollout.select(idx))
            kept_rewards.append(rewards[idx.to(rewards.device)])
        n_kept = sum(len(set(r.group_ids.tolist())) for r in kept)
        if n_kept >= target_groups or rounds >= cfg.max_sampling_tries:
            break
        prompts = module.trainer.datamodule.sample_prompts(target_groups - n_kept)
    metrics["dapo/rounds"] = float(rounds)
    if not kept:
        metrics["dapo/empty_batch"] = 1.0
        return None, None, dict(metrics)
    rollout = RolloutBatch.concat(kept)
    rewards = torch.cat(kept_rewards)
    groups = list(dict.fromkeys(rollout.group_ids.tolist()))[:target_groups]
    sel = torch.isin(rollout.group_ids, torch.tensor(groups, device=rollout.group_ids.device))
    idx = sel.nonzero().squeeze(-1)
    metrics["dapo/groups_kept"] = float(len(groups))
    return rollout.select(idx), rewards[idx].to(module.device), dict(metrics)


def signals_of(out, rollout: RolloutBatch, rewards: Tensor, detach: bool = True):
    """Credit ``Signals`` of a forward result ``out`` over ``rollout`` with ``rewards`` [B].

    ``detach=True`` for the signals that shape rewards and advantages (constants);
    ``detach=False`` keeps the graph of the attention layers computed with autograd (EASE).
    """
    # The rollout's evidence columns are padded to the widest image of the whole prompt batch;
    # after DAPO filtering / micro-batching these rows may have fewer image tokens (N).
    n = out.image_tokens.mask.shape[1]  # N of these rows
    ev = {k: None if getattr(rollout, k) is None else getattr(rollout, k)[:, :n]  # [B, N]
          for k in EVIDENCE_FIELDS}
    signals = out.to_signals(group_ids=rollout.group_ids, rewards=rewards, **ev)
    if detach:
        signals.image_attention = {k: v.detach() for k, v in signals.image_attention.items()}
        signals.response_attention = {k: v.detach() for k, v in signals.response_attention.items()}
    return signals


def reduce_metrics(per_micro_batch: list[dict]) -> dict[str, float]:
    """Mean of each metric over the micro-batches that reported it (as Python floats)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for m in per_micro_batch:
        for k, v in m.items():
            if isinstance(v, Tensor):
                if v.numel() != 1:
                    continue
                v = float(v.detach())
            elif not isinstance(v, (int, float)):
                continue
            sums[k] += float(v)
            counts[k] += 1
    return {k: sums[k] / counts[k] for k in sums}
