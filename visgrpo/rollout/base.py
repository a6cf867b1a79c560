"""Sampling settings, the rollout-engine protocol and the engine registry.

An engine turns a :class:`~visgrpo.lightning.data.PromptBatch` into a
:class:`~visgrpo.lightning.data.RolloutBatch` holding ``num_generations`` (G) responses per
prompt (group ``i`` = responses ``i*G .. i*G+G-1``), sampled without gradients. Engines only
sample; log-probs, entropies and attention are computed afterwards in the teacher-forced
forward pass (docs/architecture.md, "One RL step").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from visgrpo.registry import Registry

if TYPE_CHECKING:
    from visgrpo.lightning.data import PromptBatch, RolloutBatch


@dataclass
class SamplingConfig:
    """How responses are sampled.

    Args:
        temperature: softmax temperature (ignored when ``do_sample`` is false).
        top_p: nucleus mass; 1.0 = off.
        top_k: keep the k most likely tokens; 0 = off.
        max_new_tokens: response budget; a response without EOS within it is ``truncated``.
        num_generations: G, responses per prompt.
        stop_strings: extra strings that end a response (kept in it), e.g. ``["</answer>"]``.
        repetition_penalty: CTRL-style penalty; 1.0 = off.
        do_sample: false = greedy decoding (validation); the G responses are then identical
            copies of one greedy response.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    num_generations: int = 8
    stop_strings: list[str] = field(default_factory=list)
    repetition_penalty: float = 1.0
    do_sample: bool = True

    def __post_init__(self) -> None:
        if self.num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {self.num_generations}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")

    def greedy(self, num_generations: int = 1) -> SamplingConfig:
        """A greedy copy of this config (validation decoding)."""
        return SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            num_generations=num_generations,
            stop_strings=list(self.stop_strings),
            repetition_penalty=self.repetition_penalty,
            do_sample=False,
        )


OnVisionToken = Literal["mask", "reject"]


@runtime_checkable
class RolloutEngine(Protocol):
    """Samples responses for a batch of prompts."""

    def generate(
        self,
        model,
        processor,
        prompts: PromptBatch,
        sampling: SamplingConfig,
        seed: int | None = None,
    ) -> RolloutBatch:
        """Return G responses per prompt laid out for teacher forcing."""
        ...


ROLLOUT_ENGINES: Registry = Registry("rollout engine")


def build_rollout_engine(name: str = "hf", **kwargs) -> RolloutEngine:
    """Instantiate the engine registered as ``name`` (``hf`` or ``vllm``) with ``kwargs``."""
    import visgrpo.rollout.hf  # noqa: F401  (registers "hf")
    import visgrpo.rollout.vllm_engine  # noqa: F401  (registers "vllm"; imports vllm lazily)

    return ROLLOUT_ENGINES.get(name)(**kwargs)
