"""One KV-cache prefix shared by the rows that continue it (Qwen-VL families).

The G responses of a prompt share its tokens. Both the rollout (generation) and the
teacher-forced training forward run the decoder once per prompt on the prompt without its
last token, keep the KV cache, give every row the cache of its prompt
(:func:`expand_prefix`, with the model's M-RoPE offsets ``rope_deltas``) and continue from
it with the rows' own tokens. Under autograd the row selection is an index: the gradients
of the G copies of a key/value sum back into the prefix (chain rule), so outputs and
gradients are those of the G-fold forward up to float rounding.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import Tensor

from visgrpo.models.lora import unwrap_peft


def prefix_model_blocker(model) -> str | None:
    """Why ``model`` cannot continue a shared prefix cache (``None``: it can).

    It needs a model that keeps its M-RoPE offsets between calls (``model.model.rope_deltas``:
    the Qwen-VL families) and no peft prompt-learning adapter (those build their own cache).
    """
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return "a peft prompt-learning adapter supplies its own cache"
    if not hasattr(getattr(unwrap_peft(model), "model", None), "rope_deltas"):
        return f"{type(unwrap_peft(model)).__name__} keeps no M-RoPE offsets (rope_deltas)"
    return None


@functools.cache
def _cache_keyword(model_cls: type) -> str:
    return "cache" if "cache" in inspect.signature(model_cls.forward).parameters else "past_key_values"


def cache_keyword(model) -> str:
    """The forward's KV-cache keyword: ``cache`` since transformers 5.2x, ``past_key_values`` before."""
    return _cache_keyword(type(model))


def prefill_prefix(inner, inputs: dict, **kwargs):
    """Run ``inner`` (the ``*Model`` under ``*ForConditionalGeneration``) once on the prefixes.

    Args:
        inner: ``unwrap_peft(model).model``; its ``rope_deltas`` are set afresh here.
        inputs: the prefix rows' model inputs (``input_ids`` [n, P'], ``attention_mask``,
            vision inputs), one row per prompt.
        kwargs: further forward arguments.

    Returns:
        ``(output, cache)``: the model output (``last_hidden_state`` [n, P', D]) and its
        KV cache; ``inner.rope_deltas`` [n, 1] holds the prompts' M-RoPE offsets.
    """
    inner.rope_deltas = None  # no stale offsets from an earlier call
    out = inner(**inputs, use_cache=True, **kwargs)
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    if cache is None or inner.rope_deltas is None:
        raise RuntimeError("shared prefix: the prefill returned no cache or set no rope_deltas")
    return out, cache


def expand_prefix(inner, cache, index: Tensor) -> Tensor:
    """Give row ``r`` the prefix cache and M-RoPE offset of prompt ``index[r]`` (in place).

    Args:
        inner: the ``*Model`` whose ``rope_deltas`` [n, 1] the prefill set.
        cache: the prefill's KV cache (n rows); replaced by its rows ``index`` (differentiable).
        index: [B] long prompt of each row.

    Returns:
        [B, 1] the rows' ``rope_deltas`` (also stored on ``inner`` for ``generate``).
    """
    cache.batch_select_indices(index.to(inner.rope_deltas.device))
    inner.rope_deltas = inner.rope_deltas.index_select(0, index.to(inner.rope_deltas.device))
    return inner.rope_deltas


def continuation_positions(attention_mask: Tensor, rope_deltas: Tensor, start: int) -> Tensor:
    """[3, B, L - start] M-RoPE position ids of the text tokens at ``start ..`` of each row.

    A text token's position is its index among the row's attended tokens plus the row's
    offset (``get_rope_index``: ``rope_deltas`` = largest prompt position + 1 - prompt
    length), the same on the three M-RoPE axes; tokens outside ``attention_mask`` get 0, as
    ``get_rope_index`` gives them.

    Args:
        attention_mask: [B, L] of the whole rows (prefix and continuation).
        rope_deltas: [B, 1] the rows' offsets (:func:`expand_prefix`).
        start: first continuation position.
    """
    mask = attention_mask.long()
    pos = (mask.cumsum(-1) - 1)[:, start:] + rope_deltas.to(mask.device)  # [B, L - start]
    pos = pos.masked_fill(mask[:, start:] == 0, 0)
    return pos[None].expand(3, -1, -1)


def repeat_index(n: int, repeats: int, device=None) -> Tensor:
    """[n * repeats] prompt of each row when every prompt has ``repeats`` consecutive rows."""
    return torch.arange(n, device=device).repeat_interleave(repeats)


__all__ = [
    "cache_keyword",
    "continuation_positions",
    "expand_prefix",
    "prefill_prefix",
    "prefix_model_blocker",
    "repeat_index",
]
