"""Rollout engines: Hugging Face ``generate`` (default) and vLLM (behind a switch).

Importing the vLLM engine class does not import vllm; constructing one does.
"""

from visgrpo.rollout.base import ROLLOUT_ENGINES, RolloutEngine, SamplingConfig
from visgrpo.rollout.engines import HFRolloutEngine, VLLMRolloutEngine, build_rollout_engine

__all__ = [
    "ROLLOUT_ENGINES",
    "HFRolloutEngine",
    "RolloutEngine",
    "SamplingConfig",
    "VLLMRolloutEngine",
    "build_rollout_engine",
]
