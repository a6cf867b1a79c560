"""Aggregation of a per-token loss matrix [B, T] into a scalar, with global normalisers.

Modes (docs/methods.md, Base objectives; verl ``agg_loss``):
- ``token_mean`` (DAPO, arXiv 2503.14476 eq. 12): ``sum_{i,t} m*L / N_tok``.
- ``seq_mean_token_mean`` (GRPO arXiv 2402.03300 eq. 3; GSPO):
  ``sum_i [ sum_t m*L / |y_i| ] / N_seq``.
- ``seq_mean_token_sum_norm`` (Dr.GRPO, arXiv 2503.20783 eq. 4):
  ``sum_i [ sum_t m*L / L_norm ] / N_seq`` with a constant ``L_norm`` (max response length).

Micro-batching and sharding. Each mode is a SUM over the rows of the batch divided by a
normaliser (``N_tok`` or ``N_seq``; ``L_norm`` is a constant). Passing the normaliser of the
FULL batch (``global_normaliser``) to every micro-batch makes the micro-batch losses sum to
the full-batch loss, so gradient accumulation is exact whatever the split. ``L_norm`` must be
the same constant for every micro-batch (pass ``length_norm``; the default, the padded width
T of the given matrix, changes with padding).

Under DDP: compute the local full-batch normaliser on each rank, ``all_reduce(SUM)`` it to get
the global one, and multiply each rank's loss by ``world_size`` before ``backward`` because DDP
AVERAGES gradients over ranks (verl scales by the data-parallel size the same way).

Sequences with no real token contribute 0 and are not counted in ``N_seq``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from visgrpo.objectives._common import check_mask
from visgrpo.registry import Registry

AggregationFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
AGGREGATIONS: Registry[AggregationFn] = Registry("aggregation")


def _normaliser(value: float | Tensor | None, default: Tensor, name: str) -> Tensor:
    if value is None:
        return default.clamp(min=1).to(torch.float32)
    norm = torch.as_tensor(value, dtype=torch.float32, device=default.device)
    if norm.numel() != 1 or not bool(norm > 0):
        raise ValueError(f"{name} must be a positive scalar, got {value!r}")
    return norm.reshape(())


def _masked(loss: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, loss, torch.zeros_like(loss))  # [B, T]


@AGGREGATIONS.register("token_mean")
def token_mean(
    loss: Tensor,
    response_mask: Tensor,
    normaliser: float | Tensor | None = None,
    length_norm: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_{i,t} m*L / normaliser``; default normaliser = number of real tokens here.

    Args:
        loss: [B, T] per-token loss. response_mask: [B, T] bool.
        normaliser: global token count of the full batch (see module docstring).
        length_norm: unused (uniform signature).
    """
    del length_norm
    mask = check_mask(response_mask, loss)
    norm = _normaliser(normaliser, mask.sum(), "normaliser")
    value = _masked(loss, mask).sum() / norm
    return value, {"normaliser": norm.detach()}


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    loss: Tensor,
    response_mask: Tensor,
    normaliser: float | Tensor | None = None,
    length_norm: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_i mean_t(m*L) / normaliser``; default normaliser = number of non-empty rows here.

    Args:
        loss: [B, T]. response_mask: [B, T] bool.
        normaliser: global number of non-empty sequences of the full batch.
        length_norm: unused (uniform signature).
    """
    del length_norm
    mask = check_mask(response_mask, loss)
    lengths = mask.sum(-1)  # [B]
    norm = _normaliser(normaliser, (lengths > 0).sum(), "normaliser")
    per_seq = _masked(loss, mask).sum(-1) / lengths.clamp(min=1)  # [B]
    return per_seq.sum() / norm, {"normaliser": norm.detach()}


@AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(
    loss: Tensor,
    response_mask: Tensor,
    normaliser: float | Tensor | None = None,
    length_norm: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_i (sum_t m*L / length_norm) / normaliser`` (Dr.GRPO).

    Args:
        loss: [B, T]. response_mask: [B, T] bool.
        normaliser: global number of non-empty sequences of the full batch.
        length_norm: constant token-sum divisor, e.g. the max response length; default T
            (only micro-batch invariant if every micro-batch has the same T).
    """
    mask = check_mask(response_mask, loss)
    lengths = mask.sum(-1)  # [B]
    norm = _normaliser(normaliser, (lengths > 0).sum(), "normaliser")
    if length_norm is None:
        length_norm = float(loss.shape[-1])
    if length_norm <= 0:
        raise ValueError(f"length_norm must be > 0, got {length_norm}")
    per_seq = _masked(loss, mask).sum(-1) / length_norm  # [B]
    return per_seq.sum() / norm, {"normaliser": norm.detach()}


def aggregate(
    name: str,
    loss: Tensor,
    response_mask: Tensor,
    normaliser: float | Tensor | None = None,
    length_norm: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dispatch to the aggregation registered as ``name``; see the module docstring."""
    return AGGREGATIONS.get(name)(loss, response_mask, normaliser, length_norm)


def global_normaliser(mode: str, response_mask: Tensor) -> Tensor:
    """The normaliser of ``mode`` for a FULL batch mask [B, T] (0-dim float32 tensor).

    ``token_mean`` -> number of real tokens; ``seq_mean_*`` -> number of sequences with at
    least one real token. Under DDP compute it on each rank's full local batch, then
    ``torch.distributed.all_reduce(norm, op=SUM)``; pass the result to every micro-batch.
    The Dr.GRPO constant ``length_norm`` is separate (a config value, same on all ranks).

    Raises:
        KeyError: for an unknown mode, listing the valid ones.
    """
    AGGREGATIONS.get(mode)  # validates the name
    mask = response_mask.bool()
    if mode == "token_mean":
        n = mask.sum()
    else:
        n = (mask.sum(-1) > 0).sum()
    return n.to(torch.float32)
