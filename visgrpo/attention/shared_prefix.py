"""The teacher-forced decoder forward with each prompt's tokens run once for its G responses.

docs/architecture.md, "One RL step", step 4. The rows of a prompt group share the
left-padded prompt (positions ``0 .. P-1``, image tokens included), so a plain forward over
all ``B x (P + T)`` positions does the prompt's decoder work (forward and backward) G
times. Here the decoder runs once per group on the prompt without its last token
(positions ``0 .. P-2``; images encoded once per group) with ``use_cache=True``; every row
gets its group's KV cache and M-RoPE offset (:func:`visgrpo.models.prefix.expand_prefix`, a
differentiable row index: the G copies' gradients sum into the prefix), and the decoder
continues on the ``T + 1`` positions ``P-1 .. P+T-1`` of each row. The last prompt token is
in the continuation, so every row that predicts a response token (``P-1 .. P+T-2``) and
every own position (``P .. P+T-1``) is a continuation row: the attention probe sees all its
query rows in one pass (with a query offset of ``P - 1``), and only the image tokens'
hidden states come from the prefix pass. Outputs and gradients equal the plain forward's up
to float rounding (tests/attention/test_shared_prefix.py). One difference is by design:
dropout in training mode (LoRA's adapter dropout) draws one mask per group on the prompt
instead of one per row, as the rollout's shared prefill and ``share_images`` do.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torch.distributed.fsdp import FSDPModule

from visgrpo.attention.shared_images import shared_image_plan
from visgrpo.models.lora import unwrap_peft
from visgrpo.models.prefix import (
    cache_keyword,
    continuation_positions,
    expand_prefix,
    prefill_prefix,
    prefix_model_blocker,
)

_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def prefix_groups(group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """``(first, row_group)``: [n] long first row of each group (in row order) and [B] long
    index into ``first`` of each row's group.
    """
    groups = group_ids.tolist()
    first: dict[int, int] = {}
    for row, g in enumerate(groups):
        first.setdefault(g, row)
    order = {g: k for k, g in enumerate(sorted(first, key=first.get))}
    return (torch.tensor(sorted(first.values()), dtype=torch.long),
            torch.tensor([order[g] for g in groups], dtype=torch.long))


def shared_prefix_blocker(model, kwargs: dict, input_ids: Tensor, attention_mask: Tensor, P: int,
                          counts: dict) -> str | None:
    """Why this forward cannot share the prompt's decoder work within groups (``None``: it can).

    Args:
        model: the policy (or its peft wrapper).
        kwargs: the forward's vision inputs (``pixel_values``, ``image_grid_thw``,
            ``mm_token_type_ids``, ...).
        input_ids, attention_mask: [B, L]; P: the prompt length.
        counts: ``group_ids`` / ``pixel_counts`` / ``image_counts`` of the batch (or None).
    """
    blocker = prefix_model_blocker(model)
    if blocker is not None:
        return blocker
    base = unwrap_peft(model)
    name = "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"  # the name before transformers 5.2x
    if getattr(base, name, False) and base.training and torch.is_grad_enabled():
        return "gradient checkpointing drops the KV cache of a training forward"
    if torch.is_grad_enabled() and any(isinstance(m, FSDPModule) for m in base.modules()):
        return "FSDP2 reshards the parameters between the prefix and continuation passes of one backward"
    if any(counts.get(k) is None for k in ("group_ids", "pixel_counts", "image_counts")):
        return "no group_ids / pixel_counts / image_counts in the batch"
    if kwargs.get("pixel_values") is None or kwargs.get("image_grid_thw") is None:
        return "prompts without images (the M-RoPE offsets come from the image layout)"
    if any(kwargs.get(k) is not None for k in ("pixel_values_videos", "video_grid_thw")):
        return "videos in the prompts"
    if P < 2 or bool(kwargs["mm_token_type_ids"][:, P - 1].any()):
        return "a prompt does not end with a text token"
    first, row_group = prefix_groups(counts["group_ids"])
    if len(first) == len(row_group):
        return "one row per prompt group: nothing to share"
    rep = first.to(input_ids.device)[row_group.to(input_ids.device)]  # [B] first row of each row's group
    for x in (input_ids, attention_mask):
        if not torch.equal(x[:, :P], x[rep, :P]):
            return "rows of a prompt group have different prompt tokens"
    return None


def shared_prefix_forward(base, kwargs: dict, input_ids: Tensor, attention_mask: Tensor, P: int,
                          counts: dict, probe=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Decoder outputs of the rows from one prompt pass per group (module docstring).

    Args:
        base: the ``*ForConditionalGeneration`` model (peft unwrapped).
        kwargs: vision inputs of the batch (``pixel_values``, ``image_grid_thw``,
            ``mm_token_type_ids``); :func:`shared_prefix_blocker` returned None for them.
        input_ids, attention_mask: [B, L] (L = P + T); P: the prompt length.
        counts: ``group_ids``, ``pixel_counts``, ``image_counts`` [B].
        probe: an :class:`~visgrpo.attention.probe.AttentionProbe` (or None), installed for
            the continuation only: its query rows ``P-1 ..`` are all there.

    Returns:
        ``(cont, prefix, first, row_group)``: cont [B, T + 1, D] last hidden states of
        positions ``P-1 .. P+T-1``; prefix [n, P - 1, D] those of the groups' prompt
        positions ``0 .. P-2``; first [n] long the batch row of each prefix row; row_group
        [B] long the prefix row of each batch row.
    """
    inner = base.model
    dev = input_ids.device
    first, row_group = prefix_groups(counts["group_ids"])
    first, row_group = first.to(dev), row_group.to(dev)
    pixel_rows, grid_rows, _ = shared_image_plan(counts["group_ids"], counts["pixel_counts"],
                                                 counts["image_counts"])
    grid = kwargs["image_grid_thw"]
    rows = {"input_ids": input_ids, "attention_mask": attention_mask,
            "mm_token_type_ids": kwargs["mm_token_type_ids"]}
    prefix_in = {k: v[first, : P - 1] for k, v in rows.items()}  # [n, P - 1]
    prefix_in["pixel_values"] = kwargs["pixel_values"].index_select(0, pixel_rows.to(dev))
    prefix_in["image_grid_thw"] = grid.index_select(0, grid_rows.to(grid.device))
    prefix_out, cache = prefill_prefix(inner, prefix_in)
    deltas = expand_prefix(inner, cache, row_group)  # [B, 1]
    with probe if probe is not None else contextlib.nullcontext():
        out = inner(
            input_ids=input_ids[:, P - 1 :],
            attention_mask=attention_mask,  # [B, L]: the prompt's padding and the response's
            position_ids=continuation_positions(attention_mask, deltas, P - 1),  # [3, B, T + 1]
            use_cache=True,
            **{cache_keyword(inner): cache},
        )
    inner.rope_deltas = None  # the rows' offsets are no state for a later call
    return out.last_hidden_state, prefix_out.last_hidden_state, first, row_group


__all__ = ["prefix_groups", "shared_prefix_blocker", "shared_prefix_forward"]
