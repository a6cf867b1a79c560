"""Build a rollout engine by its registry name.

Importing this module registers every engine (``hf``; ``vllm``, whose module imports vllm
only when an engine is constructed).
"""

from __future__ import annotations

from visgrpo.rollout.base import ROLLOUT_ENGINES, RolloutEngine
from visgrpo.rollout.hf import HFRolloutEngine
from visgrpo.rollout.vllm_engine import VLLMRolloutEngine

__all__ = ["HFRolloutEngine", "VLLMRolloutEngine", "build_rollout_engine"]

#: The registered engine names as a CLI choice (``model.init_args.rollout_engine``).
def build_rollout_engine(name: str = "hf", **kwargs) -> RolloutEngine:
    """Instantiate the engine registered as ``name`` (``hf``, ``vllm`` or one a caller
    registered in :data:`~visgrpo.rollout.base.ROLLOUT_ENGINES`) with ``kwargs``.
    """
    return ROLLOUT_ENGINES.get(name)(**kwargs)
