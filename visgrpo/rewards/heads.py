"""``RewardHead``: weighted reward components scored over a batch of completions.

The head is an ``nn.Module`` without parameters owned by the LightningModule (so it shows
in the model summary and is configured by LightningCLI through ``list[RewardSpec]``).
``forward`` returns the weighted total and every component separately for logging::

    total[b] = sum_k weight_k * component_k[b]

Robustness: an exception raised while scoring one completion (malformed output, a bad
record) scores that component 0 with the exception as its reason; nothing raises at
scoring time except a batch-size mismatch (a caller bug). A misconfigured head (unknown
name, bad path, kwargs the function does not accept, duplicate keys) raises at
construction. Per-item functions run in a thread pool, so the math checks of a batch
(each blocking on its own worker process, ``_mathpool.py``) run concurrently rather than
one timeout after another.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from visgrpo.rewards.registry import resolve_reward
from visgrpo.rewards.types import RewardSpec, RewardValue, as_reward_value, is_batched


@dataclass
class RewardOutput:
    """Scores of one batch.

    Attributes:
        total: [B] float32, the weighted sum of the components.
        components: component key -> [B] float32 unweighted values.
        reasons: per completion, component key -> reason (only components that gave one).
    """

    total: Tensor
    components: dict[str, Tensor]
    reasons: list[dict[str, str]]


def _error_reason(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {exc}"[:300]


def _check_kwargs(fn: Callable, kwargs: Mapping[str, Any], batch: bool, label: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    args = ([], []) if batch else ("", {})
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(
            f"reward {label!r}: kwargs {dict(kwargs)} do not fit {fn.__name__}{sig}: {exc}"
        ) from exc


class _Component:
    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec
        self.key = spec.key or spec.name
        self.fn = resolve_reward(spec.name)
        self.batched = is_batched(self.fn)
        self.weight = float(spec.weight)
        self.kwargs = dict(spec.kwargs or {})
        _check_kwargs(self.fn, self.kwargs, self.batched, spec.name)

    def item(self, completion: str, sample: Mapping[str, Any]) -> RewardValue:
        try:
            return as_reward_value(self.fn(completion, sample, **self.kwargs))
        except Exception as exc:  # malformed output / record: 0 with the reason, never raise
            return RewardValue(0.0, _error_reason(exc))

    def batch(self, completions: list[str], samples: list[Mapping[str, Any]]) -> list[RewardValue]:
        n = len(completions)
        try:
            out = list(self.fn(completions, samples, **self.kwargs))
            if len(out) != n:
                raise ValueError(f"returned {len(out)} rewards for {n} completions")
        except Exception as exc:
            return [RewardValue(0.0, _error_reason(exc))] * n
        values = []
        for v in out:
            try:
                values.append(as_reward_value(v))
            except Exception as exc:
                values.append(RewardValue(0.0, _error_reason(exc)))
        return values


class RewardHead(nn.Module):
    """Weighted sum of reward functions (see the module docstring).

    Args:
        components: ``RewardSpec`` (or dicts with its fields): registered name or
            ``module:function`` path, weight, kwargs, optional output key.
        num_threads: threads scoring per-item functions (>= the math pool size is useful).
    """

    def __init__(
        self, components: Sequence[RewardSpec | Mapping[str, Any]], num_threads: int = 8
    ) -> None:
        super().__init__()
        if not components:
            raise ValueError("RewardHead needs at least one reward component")
        specs = [c if isinstance(c, RewardSpec) else RewardSpec(**dict(c)) for c in components]
        self.specs = specs
        self._components = [_Component(s) for s in specs]
        keys = [c.key for c in self._components]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(
                f"duplicate reward component keys {dup}; set RewardSpec.key to tell them apart"
            )
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = int(num_threads)

    @property
    def keys(self) -> list[str]:
        """Component keys in configuration order."""
        return [c.key for c in self._components]

    def extra_repr(self) -> str:
        return ", ".join(f"{c.key}*{c.weight:g}" for c in self._components)

    def forward(self, completions: list[str], samples: list[Mapping[str, Any]]) -> RewardOutput:
        """Score ``completions[b]`` against ``samples[b]``; returns :class:`RewardOutput`."""
        B = len(completions)
        if len(samples) != B:
            raise ValueError(f"{B} completions but {len(samples)} samples")
        completions, samples = list(completions), list(samples)
        results: dict[str, list[RewardValue]] = {}
        per_item = [c for c in self._components if not c.batched]
        for c in self._components:
            if c.batched:
                results[c.key] = c.batch(completions, samples)
        if per_item:
            jobs = [(c, b) for c in per_item for b in range(B)]
            workers = min(self.num_threads, len(jobs))
            if workers <= 1:
                values = [c.item(completions[b], samples[b]) for c, b in jobs]
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="reward") as ex:
                    values = list(
                        ex.map(lambda j: j[0].item(completions[j[1]], samples[j[1]]), jobs)
                    )
            for c in per_item:
                results[c.key] = values[:B]
                values = values[B:]
        components = {
            c.key: torch.tensor([v.value for v in results[c.key]], dtype=torch.float32)  # [B]
            for c in self._components
        }
        total = torch.zeros(B, dtype=torch.float32)  # [B]
        for c in self._components:
            total = total + c.weight * components[c.key]  # [B]
        reasons = [
            {c.key: results[c.key][b].reason for c in self._components if results[c.key][b].reason}
            for b in range(B)
        ]
        return RewardOutput(total=total, components=components, reasons=reasons)
