"""DAPO overlong reward shaping ("soft overlong punishment", arXiv 2503.14476 eq. 13).

With ``L_max`` = ``max_len`` and ``L_c`` = ``cache_len``::

    R_len(y) = 0                              if |y| <= L_max - L_c
             = ((L_max - L_c) - |y|) / L_c    if L_max - L_c < |y| <= L_max
             = -1                             if |y| > L_max

The penalty is added to the outcome reward. It is continuous at ``L_max - L_c`` (0) and
reaches -1 at ``|y| = L_max``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """Vectorised DAPO overlong penalty.

    Args:
        lengths: [B] response lengths in tokens (integer or float, >= 0).
        max_len: ``L_max`` (> 0).
        cache_len: ``L_c``, with ``0 < cache_len <= max_len``.

    Returns:
        [B] float32 penalty in [-1, 0].

    Raises:
        ValueError: naming the bad argument.
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be > 0, got {max_len}")
    if not 0 < cache_len <= max_len:
        raise ValueError(f"cache_len must be in (0, max_len={max_len}], got {cache_len}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be [B], got shape {tuple(lengths.shape)}")
    if lengths.numel() and bool((lengths < 0).any()):
        raise ValueError("lengths contains negative values")
    n = lengths.to(torch.float32)  # [B]
    start = float(max_len - cache_len)
    linear = (start - n) / float(cache_len)  # [B]
    out = torch.where(n <= start, torch.zeros_like(n), linear)  # [B]
    return torch.where(n > max_len, torch.full_like(n, -1.0), out)  # [B]
