"""Pieces of the RL step: the overlong cache, signals over a subset of rows, metric reduction."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from visgrpo.lightning.steps import overlong_cache, reduce_metrics, signals_of


def test_overlong_cache_keeps_the_preset_when_it_fits_else_dapo_proportion():
    assert overlong_cache(512, 256) == 256
    assert overlong_cache(256, 256) == 256
    assert overlong_cache(24, 256) == 5  # round(0.2 * 24) = round(4.8)
    assert overlong_cache(2, 256) == 1  # at least one token


def test_signals_of_cuts_evidence_to_the_rows_image_width():
    """A micro-batch of small-image rows has N = 4 image tokens while the rollout's evidence
    columns are padded to the batch's widest image (6): the first 4 entries are its own."""
    seen = {}

    def to_signals(**kw):
        seen.update(kw)
        return SimpleNamespace(image_attention={}, response_attention={})

    out = SimpleNamespace(image_tokens=SimpleNamespace(mask=torch.ones(2, 4, dtype=torch.bool)),
                          to_signals=to_signals)
    target = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25, 0.0, 0.0]])
    rollout = SimpleNamespace(group_ids=torch.tensor([0, 0]), evidence_mask=target > 0.2,
                              evidence_target=target, region_labels=None)
    signals_of(out, rollout, torch.tensor([1.0, 0.0]))
    assert torch.equal(seen["evidence_target"], target[:, :4])
    assert torch.equal(seen["evidence_mask"], target[:, :4] > 0.2)
    assert seen["region_labels"] is None


def test_reduce_metrics_means_over_reporting_micro_batches():
    logs = [{"a": torch.tensor(1.0), "b": 4}, {"a": torch.tensor(3.0)}, {"c": torch.ones(3)}]
    assert reduce_metrics(logs) == {"a": 2.0, "b": 4.0}  # vectors are not metrics
