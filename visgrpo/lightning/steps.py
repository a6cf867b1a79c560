"""Pieces of the RL step that do not need the module: rollout collection (with DAPO dynamic
sampling and overlong shaping), signals of a forward pass, and metric reduction over
micro-batches.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.data.fields import EVIDENCE_FIELDS
from visgrpo.data.signals import Signals
from visgrpo.objectives import DynamicSamplingAccumulator, overlong_penalty
from visgrpo.rollout import SamplingConfig


def overlong_cache(max_len: int, cache_len: int) -> int:
    """The overlong cache ``L_c`` used with a generation budget ``max_len``.

    The preset's ``cache_len`` when it fits (``<= max_len``); otherwise DAPO's proportion
    (4096 of 20480 = 1/5 of the budget), at least 1 token.
    """
    return cache_len if 0 < cache_len <= max_len else max(1, round(0.2 * max_len))


def score(reward_head, objective, max_new_tokens: int, rollout: RolloutBatch) -> tuple[Tensor, dict[str, Tensor]]:
    """Outcome rewards [B] (reward head + DAPO overlong shaping) and their metrics.

    Args:
        reward_head: ``RewardHead`` of the run.
        objective: the ``ObjectiveConfig`` (overlong shaping settings).
        max_new_tokens: the generation budget (overlong shaping's ``L_max``).
        rollout: the responses to score.
    """
    out = reward_head(rollout.completions, rollout.samples)
    rewards = out.total.to(torch.float32)  # [B]
    metrics = {f"reward/{k}": v.float().mean() for k, v in out.components.items()}
    if objective.overlong_shaping:
        lengths = rollout.response_mask.sum(-1).cpu()  # [B]
        penalty = overlong_penalty(lengths, max_new_tokens,
                                   overlong_cache(max_new_tokens, objective.overlong_cache_length))
        rewards = rewards + penalty.to(rewards)
        metrics["reward/overlong"] = penalty.float().mean()
    metrics["reward/outcome"] = rewards.mean()
    return rewards, metrics


def collect_rollouts(
    engine,
    policy,
    processor,
    sampling: SamplingConfig,
    score_fn: Callable[[RolloutBatch], tuple[Tensor, dict]],
    objective,
    prompts: PromptBatch,
    sample_prompts: Callable[[int], PromptBatch],
    seed: int,
    device,
) -> tuple[RolloutBatch | None, Tensor | None, dict[str, float]]:
    """Sample and score rollouts; with DAPO dynamic sampling, keep drawing prompts until the
    batch holds ``len(prompts)`` groups of unequal rewards (at most ``max_sampling_tries`` rounds).

    Args:
        engine, policy, processor, sampling: the rollout engine and what it generates with.
        score_fn: rollout -> (rewards [B], metrics), e.g. :func:`score` with its settings bound.
        objective: the ``ObjectiveConfig`` (dynamic sampling settings).
        prompts: the step's prompt batch (``G`` responses each).
        sample_prompts: ``n -> PromptBatch`` of ``n`` more prompts (rounds after the first).
        seed: the step's sampling seed; round ``k`` (1-based) generates with ``seed + k``.
        device: where the rollout and rewards go.

    Returns:
        ``(rollout, rewards [B], metrics)``; ``rollout`` is ``None`` when every group was
        dropped in every round (the step is then skipped and counted). The reward metrics
        are named ``reward/first_round/<k>`` (the first round's samples) and
        ``reward/filtered/<k>`` (the returned batch, after the dynamic-sampling filter).
    """
    metrics: dict[str, float] = {}
    acc = DynamicSamplingAccumulator(len(prompts.prompts), objective.max_sampling_tries,
                                     objective.dynamic_sampling_atol)
    rounds: list[RolloutBatch] = []
    while True:
        rollout = engine.generate(policy, processor, prompts, sampling, seed=seed + len(rounds) + 1).to(device)
        rewards, m = score_fn(rollout)
        if not rounds:  # the policy's own samples, before any filtering
            metrics.update(_reward_metrics(m, FIRST_ROUND))
        metrics["rollout/response_length"] = float(rollout.response_mask.sum(-1).float().mean())
        metrics["rollout/truncated"] = float(rollout.truncated.float().mean())
        if not objective.dynamic_sampling:  # nothing is filtered: the trained batch is the first round
            metrics.update(_reward_metrics(m, FILTERED))
            return rollout, rewards.to(device), metrics
        acc.add(rewards.cpu(), rollout.group_ids.cpu(), items=[(len(rounds), i) for i in range(len(rewards))])
        rounds.append(rollout)
        if acc.done:
            break
        prompts = sample_prompts(acc.target_groups - acc.groups_kept)
    am = acc.metrics()
    metrics.update({"dapo/groups_dropped": am["groups_dropped"], "dapo/groups_total": am["groups_seen"],
                    "dapo/rounds": am["sampling_rounds"]})
    if not acc.groups_kept:
        metrics["dapo/empty_batch"] = 1.0
        return None, None, metrics
    rows: dict[int, list[int]] = {}
    for r, i in acc.items():  # groups in order of first appearance, round by round
        rows.setdefault(r, []).append(i)
    parts = [rounds[r].select(torch.tensor(idx, device=rounds[r].group_ids.device)) for r, idx in rows.items()]
    rollout = RolloutBatch.concat(parts)
    rollout.group_ids = acc.group_ids().to(rollout.group_ids.device)
    metrics["dapo/groups_kept"] = float(acc.groups_kept)
    rewards = acc.rewards()
    _, kept = score_fn(rollout)  # the trained batch's reward components (rule-based heads: cheap)
    metrics.update(_reward_metrics(kept, FILTERED))
    return rollout, rewards.to(device), metrics


# Reward metric prefixes: the first sampling round (the policy's own samples: its sampled
# accuracy) and the batch that is trained on, after DAPO's dynamic-sampling filter (the
# same as the first round without it). Issue 22: one ``reward/`` prefix for both misled.
FIRST_ROUND = "reward/first_round/"
FILTERED = "reward/filtered/"


def _reward_metrics(metrics: dict, prefix: str) -> dict[str, float]:
    """``reward/<k>`` of :func:`score` renamed to ``<prefix><k>`` (floats)."""
    return {prefix + k.split("/", 1)[-1]: float(v) for k, v in metrics.items() if k.startswith("reward/")}


def signals_of(out: Signals, rollout: RolloutBatch, rewards: Tensor) -> Signals:
    """The forward's ``Signals`` ``out`` over ``rollout`` with the rollout's group ids,
    ``rewards`` [B] and evidence filled in (tensors as computed: the credit signals are its
    :meth:`~visgrpo.data.signals.Signals.detached` copy; the auxiliary losses read it as is).
    """
    # The rollout's evidence columns are padded to the widest image of the whole prompt batch;
    # after DAPO filtering / micro-batching these rows may have fewer image tokens (N).
    n = out.image_mask.shape[1]  # N of these rows
    ev = {k: None if getattr(rollout, k) is None else getattr(rollout, k)[:, :n]  # [B, N]
          for k in EVIDENCE_FIELDS}
    return dataclasses.replace(out, group_ids=rollout.group_ids, rewards=rewards, **ev)


_REDUCE = {"min": torch.minimum, "max": torch.maximum, "sum": torch.add}


@torch.no_grad()
def batch_statistics(credit, forward, rollout: RolloutBatch, rewards: Tensor, micro: list[Tensor],
                     world_size: int) -> dict[str, Tensor] | None:
    """The credit methods' batch statistics over the whole rollout batch and all ranks (None
    when no method has one, or one micro-batch on one rank is the whole batch: a method then
    takes them from its own signals).

    One no-grad forward (``forward(rows)``) per micro-batch, combined with each statistic's
    reduction and all-reduced over ranks. The scope is the rollout batch, never a
    mini-batch (VGPO's and VPPO's authors min-max per micro- / mini-batch; docs/methods.md
    lists these departures).
    """
    reductions = credit.batch_reductions
    if not reductions or (len(micro) == 1 and world_size == 1):
        return None
    stats: dict[str, Tensor] = {}
    for idx in micro:
        mb = rollout.select(idx)
        part = credit.batch_statistics(signals_of(forward(mb), mb, rewards[idx]).detached())
        stats = {k: _REDUCE[reductions[k]](stats[k], v) if k in stats else v for k, v in part.items()}
    if world_size > 1:
        ops = {"min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX, "sum": dist.ReduceOp.SUM}
        for k, v in stats.items():
            dist.all_reduce(v, op=ops[reductions[k]])
    return stats


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
