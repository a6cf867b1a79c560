"""Plain-loop reference of SAYO's attention reward, transcribing the authors' code.

Written independently of ``visgrpo.credit.sayo``: Python floats and lists, one row at a
time, following Cratileo/Sayo line by line:

* ``_get_entropies_mask`` in
  https://github.com/Cratileo/Sayo/blob/HEAD/train/trainer/grpo_trainer.py: entropies of
  the rows that predict the completion tokens (``logits[:, :-1][:, -T:] / temperature``), the last one
  dropped (``entropies[:, :-1]``), then ``get_top_entropy_indices_list``:
  ``k = max(1, int(seq_len * 0.3))`` over the (padded) ``seq_len = T - 1`` and
  ``torch.topk``;
* ``attn_reward`` in https://github.com/Cratileo/Sayo/blob/HEAD/train/reward/attn_rewards.py:
  the attention captured during generation without its prefill step (``attns[1:]``), so entry j is the decode step whose
  query is completion token j (position ``P + j``); the selected entries' head x key
  slices over the image tokens and over the focus area are concatenated and averaged;
  ``r = tanh(log((aim + 1e-8) / (img + 1e-8)))``.

``real_tokens_only=True`` applies visgrpo's documented fix (rank only the real tokens
0 .. n-2 of each response, ``seq_len = n - 1``; a one-token response keeps token 0);
False ranks the padded positions like their code. Image and region keys are given as
explicit key positions (their code takes the span first..last image token of the
unpadded prompt ids, and focus-area ranges offset by it).
"""

from __future__ import annotations

import math


def _topk_indices(values: list[float], k: int) -> list[int]:
    # torch.topk order; ties (measure zero on real entropies) by position.
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]


def authors_entropy_ids(entropies, response_mask, top_ratio: float = 0.3, real_tokens_only: bool = True):
    """Per row, the indices j of the selected (entropy, attention) pairs.

    Args:
        entropies: [B][T] entropy of the distribution generating completion token t.
        response_mask: [B][T] real tokens.
        top_ratio: their 0.3.
        real_tokens_only: visgrpo's fix (see the module docstring).
    """
    E = [list(map(float, row)) for row in _tolist(entropies)]
    M = [[bool(x) for x in row] for row in _tolist(response_mask)]
    out = []
    for row, mrow in zip(E, M, strict=True):
        if real_tokens_only:
            n = sum(mrow)
            cand = list(range(n - 1)) if n > 1 else list(range(n))
        else:
            cand = list(range(len(row) - 1))  # entropies[:, :-1]
        seq_len = len(cand)
        k = max(1, int(seq_len * top_ratio))
        picked = _topk_indices([row[j] for j in cand], k)
        out.append([cand[i] for i in picked])
    return out


def authors_attn_reward(step_attns, entropy_ids, image_keys, region_keys, eps: float = 1e-8) -> list[float]:
    """``attn_reward`` of their code.

    Args:
        step_attns: ``step_attns[b][j]`` = [H][K] attention (all heads, all keys) of the
            decode step whose query is completion token j (position ``P + j``).
        entropy_ids: per row, the selected j (:func:`authors_entropy_ids`).
        image_keys: per row, key positions of the image tokens.
        region_keys: per row, key positions of the focus area.
        eps: their 1e-8.

    Returns:
        [B] rewards.
    """
    rewards = []
    for b, ids in enumerate(entropy_ids):
        img_vals, aim_vals = [], []
        for j in ids:
            token = _tolist(step_attns[b][j])  # [H][K]
            for head in token:
                img_vals.extend(head[p] for p in image_keys[b])
                aim_vals.extend(head[p] for p in region_keys[b])
        img = sum(img_vals) / len(img_vals)
        aim = sum(aim_vals) / len(aim_vals)
        rewards.append(math.tanh(math.log((aim + eps) / (img + eps))))
    return rewards


def _tolist(x):
    return x.tolist() if hasattr(x, "tolist") else x
