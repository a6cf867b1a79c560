"""Hidden-state signals: rows at given positions, mean over image tokens, visual focus.

VGPO (arXiv 2604.09349, docs/methods.md, VGPO) scores each response token by the cosine
between its last-layer hidden state and the mean last-layer hidden state of the image
tokens: ``w[i,t] = cos(h[i,t], mean_{v in I} h[i,v])``. This module extracts both from
one forward's last hidden states [B, L, D]; the normalisation/gating lives in the credit
method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gather_rows(hidden: Tensor, positions: Tensor) -> Tensor:
    """``hidden[b, positions[b, t]]``.

    Args:
        hidden: [B, L, D]. positions: [B, T] long in [0, L).

    Returns:
        [B, T, D].
    """
    B, _, D = hidden.shape
    idx = positions.long().to(hidden.device)[:, :, None].expand(B, positions.shape[1], D)
    return hidden.gather(1, idx)  # [B, T, D]


def masked_mean_rows(hidden: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` over the valid ``positions`` of each sample (0 if none).

    Args:
        hidden: [B, L, D]; positions: [B, N] long; mask: [B, N] bool.

    Returns:
        [B, D] in float32.
    """
    rows = gather_rows(hidden, positions).to(torch.float32)  # [B, N, D]
    w = mask.to(rows)[:, :, None]  # [B, N, 1]
    return (rows * w).sum(1) / w.sum(1).clamp(min=1.0)  # [B, D]


def visual_focus(hidden_resp: Tensor, image_hidden_mean: Tensor, eps: float = 1e-8) -> Tensor:
    """VGPO visual focus ``cos(h[i,t], mean_v h[i,v])`` (arXiv 2604.09349, section 3).

    Args:
        hidden_resp: [B, T, D] hidden states at the response rows.
        image_hidden_mean: [B, D] mean hidden state over the sample's image tokens.
        eps: cosine denominator floor.

    Returns:
        [B, T] float32 cosine similarities (not normalised, not masked).
    """
    h = hidden_resp.to(torch.float32)  # [B, T, D]
    v = image_hidden_mean.to(torch.float32)[:, None, :]  # [B, 1, D]
    return F.cosine_similarity(h, v.expand_as(h), dim=-1, eps=eps)  # [B, T]
