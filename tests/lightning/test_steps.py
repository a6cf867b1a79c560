"""Pieces of the RL step: the overlong cache, rollout collection with DAPO dynamic sampling,
signals over a subset of rows, metric reduction.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from visgrpo.data.batch import RolloutBatch
from visgrpo.data.signals import Signals
from visgrpo.lightning.steps import collect_rollouts, overlong_cache, reduce_metrics, signals_of
from visgrpo.objectives import get_preset
from visgrpo.rollout import SamplingConfig


def test_overlong_cache_keeps_the_preset_when_it_fits_else_dapo_proportion():
    assert overlong_cache(512, 256) == 256
    assert overlong_cache(256, 256) == 256
    assert overlong_cache(24, 256) == 5  # round(0.2 * 24) = round(4.8)
    assert overlong_cache(2, 256) == 1  # at least one token


def test_signals_of_cuts_evidence_to_the_rows_image_width():
    """A micro-batch of small-image rows has N = 4 image tokens while the rollout's evidence
    columns are padded to the batch's widest image (6): the first 4 entries are its own.
    """
    logp = torch.zeros(2, 3, requires_grad=True) * 1.0  # [B, T] with a graph
    out = Signals(torch.ones(2, 3, dtype=torch.bool), None, None, torch.ones(2, 4, dtype=torch.bool), logp=logp)
    target = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25, 0.0, 0.0]])
    rollout = SimpleNamespace(group_ids=torch.tensor([0, 0]), evidence_mask=target > 0.2,
                              evidence_target=target, region_labels=None)
    rewards = torch.tensor([1.0, 0.0])
    seen = signals_of(out, rollout, rewards)
    assert torch.equal(seen.evidence_target, target[:, :4])
    assert torch.equal(seen.evidence_mask, target[:, :4] > 0.2)
    assert seen.region_labels is None
    assert seen.rewards is rewards and seen.group_ids is rollout.group_ids
    assert seen.logp is logp and out.rewards is None  # as computed; ``out`` itself unchanged


def test_reduce_metrics_means_over_reporting_micro_batches():
    logs = [{"a": torch.tensor(1.0), "b": 4}, {"a": torch.tensor(3.0)}, {"c": torch.ones(3)}]
    assert reduce_metrics(logs) == {"a": 2.0, "b": 4.0}  # vectors are not metrics


def fake_rollout(prompts, G: int) -> RolloutBatch:
    """G one-token responses per prompt; the sample carries the rewards its responses get."""
    B = len(prompts.samples) * G
    return RolloutBatch(
        input_ids=torch.arange(B)[:, None].repeat(1, 3), attention_mask=torch.ones(B, 3, dtype=torch.long),
        prompt_length=2, response_ids=torch.arange(B)[:, None], response_mask=torch.ones(B, 1, dtype=torch.bool),
        group_ids=torch.arange(B) // G, completions=[f"c{i}" for i in range(B)],
        samples=[s for s in prompts.samples for _ in range(G)], truncated=torch.zeros(B, dtype=torch.bool),
        rejected=torch.zeros(B, dtype=torch.bool), vision_tokens=torch.zeros(B, dtype=torch.long), pad_token_id=0,
    )


class FakeEngine:
    def __init__(self):
        self.seeds = []

    def generate(self, policy, processor, prompts, sampling, seed=None):
        self.seeds.append(seed)
        return fake_rollout(prompts, sampling.num_generations)


def prompts_of(*rewards: tuple[float, ...]):
    samples = [{"id": f"p{sum(r)}{i}", "r": r} for i, r in enumerate(rewards)]
    return SimpleNamespace(prompts=[s["id"] for s in samples], samples=samples)


def fake_score(rollout):
    g = torch.arange(len(rollout.samples)) % 2  # index inside the group (G = 2)
    rewards = torch.tensor([s["r"][int(i)] for s, i in zip(rollout.samples, g, strict=True)])
    return rewards, {"reward/outcome": rewards.mean()}


def collect(prompts, more, dynamic=True, tries=3):
    engine = FakeEngine()
    objective = get_preset("dapo", dynamic_sampling=dynamic, max_sampling_tries=tries)
    queue = list(more)
    out = collect_rollouts(engine, None, None, SamplingConfig(num_generations=2), fake_score, objective, prompts,
                           lambda n: queue.pop(0), seed=100, device="cpu")
    return (*out, engine.seeds)


def test_collect_rollouts_draws_until_the_batch_is_full():
    # round 1: (1, 1) all equal -> dropped, (0, 1) kept; round 2 (one prompt asked): (1, 0) kept
    rollout, rewards, metrics, seeds = collect(prompts_of((1.0, 1.0), (0.0, 1.0)), [prompts_of((1.0, 0.0))])
    assert seeds == [101, 102]  # seed + round
    assert rollout.completions == ["c2", "c3", "c0", "c1"]  # round 1's second group, then round 2's
    assert rewards.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert rollout.group_ids.tolist() == [0, 0, 1, 1]
    assert metrics["dapo/rounds"] == 2 and metrics["dapo/groups_total"] == 3
    assert metrics["dapo/groups_dropped"] == 1 and metrics["dapo/groups_kept"] == 2
    assert metrics["reward/first_round/outcome"] == 0.75  # the first round's rewards (1, 1, 0, 1)
    assert metrics["reward/filtered/outcome"] == 0.5  # the trained batch's (0, 1, 1, 0)


def test_collect_rollouts_without_dynamic_sampling_keeps_equal_groups():
    rollout, rewards, metrics, seeds = collect(prompts_of((1.0, 1.0), (0.0, 1.0)), [], dynamic=False)
    assert seeds == [101] and rewards.tolist() == [1.0, 1.0, 0.0, 1.0] and "dapo/rounds" not in metrics
    assert metrics["reward/first_round/outcome"] == metrics["reward/filtered/outcome"] == 0.75  # nothing filtered


def test_collect_rollouts_gives_up_empty_after_max_tries():
    rollout, rewards, metrics, seeds = collect(prompts_of((1.0, 1.0)), [prompts_of((0.0, 0.0))], tries=2)
    assert rollout is None and rewards is None and len(seeds) == 2
    assert metrics["dapo/empty_batch"] == 1.0 and metrics["dapo/groups_dropped"] == 2
