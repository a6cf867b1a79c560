"""Rollout engines: Hugging Face ``generate`` (default) and vLLM (behind a switch).

Engines are imported lazily (``visgrpo.lightning.data`` imports this package's helpers, and
the vLLM engine must not import vllm unless selected).
"""

from visgrpo.rollout.base import (
    ROLLOUT_ENGINES,
    RolloutEngine,
    SamplingConfig,
    build_rollout_engine,
)

__all__ = [
    "ROLLOUT_ENGINES",
    "HFRolloutEngine",
    "RolloutEngine",
    "SamplingConfig",
    "VLLMRolloutEngine",
    "build_rollout_engine",
]


def __getattr__(name: str):
    if name == "HFRolloutEngine":
        from visgrpo.rollout.hf import HFRolloutEngine

        return HFRolloutEngine
    if name == "VLLMRolloutEngine":  # importing the class does not import vllm
        from visgrpo.rollout.vllm_engine import VLLMRolloutEngine

        return VLLMRolloutEngine
    raise AttributeError(f"module 'visgrpo.rollout' has no attribute {name!r}")
