"""RewardHead: weighted totals, components, reasons, user rewards, configuration errors."""

from __future__ import annotations

import pytest
import torch

from visgrpo.rewards import (
    REWARD_FUNCTIONS,
    RewardHead,
    RewardSpec,
    RewardValue,
    as_reward_value,
    is_batched,
    resolve_reward,
)

CHOICE = {"id": "c1", "answer": "B", "answer_type": "choice"}
TEXT = {"id": "t1", "answer": "red", "answer_type": "text"}


def test_registry_names():
    assert {
        "accuracy",
        "choice_accuracy",
        "math_accuracy",
        "exact_accuracy",
        "format",
        "grounding_iou",
        "overlong",
    } <= set(REWARD_FUNCTIONS.names())
    with pytest.raises(KeyError, match="unknown reward function 'acuracy'; valid: accuracy"):
        resolve_reward("acuracy")


def test_weighted_total_components_and_reasons():
    head = RewardHead([RewardSpec("accuracy", 1.0), RewardSpec("format", 0.5)])
    completions = [
        "<think>hm</think><answer>B</answer>",  # acc 1, format 1 -> 1 + 0.5 = 1.5
        "<answer>B</answer>",  # acc 1, format 0 -> 1.0
        "<think>hm</think><answer>blue</answer>",  # acc 0, format 1 -> 0.5
        "no idea",  # acc 0, format 0 -> 0
    ]
    out = head(completions, [CHOICE, CHOICE, TEXT, TEXT])
    assert out.total.dtype == torch.float32 and out.total.shape == (4,)
    assert out.total.tolist() == pytest.approx([1.5, 1.0, 0.5, 0.0])
    assert out.components["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert out.components["format"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert out.reasons[0] == {}
    assert set(out.reasons[1]) == {"format"}
    assert out.reasons[2] == {"accuracy": "no exact match"}
    assert set(out.reasons[3]) == {"accuracy", "format"}
    assert head.keys == ["accuracy", "format"]


def test_malformed_outputs_score_zero_with_reason():
    head = RewardHead([RewardSpec("accuracy"), RewardSpec("grounding_iou", key="iou")])
    bad_record = {"id": "b1", "answer": "x", "answer_type": "essay"}
    out = head([None, 123, "<answer>B</answer>"], [CHOICE, CHOICE, bad_record])
    assert out.total.tolist() == [0.0, 0.0, 0.0]
    assert out.reasons[0]["accuracy"].startswith("error: TypeError: completion must be str")
    assert "answer_type 'essay'" in out.reasons[2]["accuracy"]
    assert "'family' is missing" in out.reasons[2]["iou"]


def test_empty_batch_and_size_mismatch():
    head = RewardHead([RewardSpec("format")])
    out = head([], [])
    assert out.total.shape == (0,) and out.reasons == []
    with pytest.raises(ValueError, match="2 completions but 1 samples"):
        head(["a", "b"], [{}])


def test_misconfigured_head_raises_at_construction():
    with pytest.raises(KeyError, match="unknown reward function 'nope'"):
        RewardHead([RewardSpec("nope")])
    with pytest.raises(TypeError, match="reward 'format'.*threshold"):
        RewardHead([RewardSpec("format", 1.0, {"threshold": 0.5})])
    with pytest.raises(ValueError, match="duplicate reward component keys \\['format'\\]"):
        RewardHead([RewardSpec("format"), RewardSpec("format", 0.2, {"strict": False})])
    with pytest.raises(ValueError, match="at least one"):
        RewardHead([])
    # two variants of one function are fine with distinct keys
    head = RewardHead(
        [
            RewardSpec("format"),
            {"name": "format", "kwargs": {"strict": False}, "key": "format_lenient"},
        ]
    )
    out = head([" <think>a</think> <answer>b</answer>"], [{}])
    assert out.components["format"].item() == 0.0 and out.components["format_lenient"].item() == 1.0


def test_user_rewards_by_path(helpers_path):
    head = RewardHead(
        [
            RewardSpec("reward_helpers:length_is_even", 2.0, {"bonus": 0.25}),
            RewardSpec("reward_helpers:contains_answer", 1.0),  # batch function (TRL style)
            RewardSpec("reward_helpers:raises", 1.0),
        ]
    )
    out = head(["ab B", "abc"], [CHOICE, CHOICE])
    # item 0: even length (4) -> 0.25 * 2 = 0.5; contains "B" -> 1; raises -> 0. Total 1.5
    # item 1: odd length -> 0 ("odd length"); no "B" -> 0; total 0
    assert out.total.tolist() == pytest.approx([1.5, 0.0])
    assert out.reasons[1]["reward_helpers:length_is_even"] == "odd length"
    assert out.reasons[0]["reward_helpers:raises"] == "error: RuntimeError: boom"
    broken = RewardHead([RewardSpec("reward_helpers:wrong_length")])
    out = broken(["a", "b"], [{}, {}])
    assert out.total.tolist() == [0.0, 0.0]
    assert "returned 1 rewards for 2 completions" in out.reasons[0]["reward_helpers:wrong_length"]


def test_resolve_reward_errors(helpers_path):
    assert resolve_reward("reward_helpers:length_is_even").__name__ == "length_is_even"
    with pytest.raises(ValueError, match="cannot import module 'no_such_mod_xyz'"):
        resolve_reward("no_such_mod_xyz:f")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        resolve_reward("reward_helpers:missing")
    with pytest.raises(ValueError, match="'NOT_CALLABLE' is a int, not callable"):
        resolve_reward("reward_helpers:NOT_CALLABLE")
    with pytest.raises(ValueError, match="package.module:function"):
        resolve_reward("reward_helpers:")


def test_return_value_coercion_and_batch_detection():
    assert as_reward_value(True) == RewardValue(1.0, None)
    assert as_reward_value((0.5, "half")) == RewardValue(0.5, "half")
    assert as_reward_value(None) == RewardValue(0.0, "not applicable")
    assert as_reward_value(float("nan")) == RewardValue(0.0, "non-finite reward")
    assert as_reward_value(torch.tensor(0.25)) == RewardValue(0.25, None)
    with pytest.raises(TypeError, match="returned str"):
        as_reward_value("1")
    assert is_batched(lambda completions, samples: []) and not is_batched(
        lambda completion, sample: 0
    )


def test_reward_spec_parses_with_jsonargparse():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--rewards", type=list[RewardSpec])
    cfg = parser.parse_string(
        "rewards:\n"
        "  - {name: accuracy, weight: 1.0, kwargs: {timeout: 2.0}}\n"
        "  - {name: format, weight: 0.1}\n"
    )
    specs = parser.instantiate_classes(cfg).rewards
    assert specs == [RewardSpec("accuracy", 1.0, {"timeout": 2.0}), RewardSpec("format", 0.1)]
    assert RewardHead(specs).keys == ["accuracy", "format"]
