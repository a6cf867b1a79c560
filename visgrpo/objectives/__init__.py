"""Policy-gradient core shared by every method: advantages, surrogate losses, aggregation,
KL estimators, presets, DAPO dynamic sampling and overlong shaping, chunked log-probs.

All functions are pure over tensors and return ``(value, metrics)`` (docs/methods.md, Base objectives).
"""

from visgrpo.objectives.advantages import (
    ADVANTAGES,
    compute_advantages,
    dr_grpo_advantages,
    grpo_advantages,
)
from visgrpo.objectives.aggregation import AGGREGATIONS, aggregate, global_normaliser
from visgrpo.objectives.kl import KL_ESTIMATORS, kl_penalty
from visgrpo.objectives.logprobs import selective_log_softmax, token_logprobs_and_entropy
from visgrpo.objectives.policy_loss import POLICY_LOSSES, gspo_loss, ppo_clip_loss, sapo_loss
from visgrpo.objectives.presets import PRESETS, ObjectiveConfig, get_preset, policy_objective
from visgrpo.objectives.sampling import DynamicSamplingAccumulator, dynamic_sampling_filter
from visgrpo.objectives.shaping import overlong_penalty

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "PRESETS",
    "DynamicSamplingAccumulator",
    "ObjectiveConfig",
    "aggregate",
    "compute_advantages",
    "dr_grpo_advantages",
    "dynamic_sampling_filter",
    "get_preset",
    "global_normaliser",
    "grpo_advantages",
    "gspo_loss",
    "kl_penalty",
    "overlong_penalty",
    "policy_objective",
    "ppo_clip_loss",
    "sapo_loss",
    "selective_log_softmax",
    "token_logprobs_and_entropy",
]
