"""Batch-scope credit statistics: a batch split into parts whose statistics are combined
gives, part by part, the advantages of the whole batch (VGPO's focus min-max); the
composition prefixes them; the loss forward's request comes from the methods.
"""

from __future__ import annotations

import torch

from visgrpo.credit import ATRLCredit, ComposedCredit, EASECredit, SAYOCredit, VGPOCredit
from visgrpo.data.signals import Signals

REDUCE = {"min": torch.minimum, "max": torch.maximum, "sum": torch.add}


def signals(rows: slice, hidden, image, mask, groups) -> Signals:
    return Signals(response_mask=mask[rows], group_ids=groups[rows], rewards=torch.zeros(mask[rows].shape[0]),
                   image_mask=torch.ones(mask[rows].shape[0], 1, dtype=torch.bool),
                   own_hidden=hidden[rows], image_hidden_mean=image[rows])


def test_vgpo_parts_with_combined_statistics_equal_the_whole_batch():
    torch.manual_seed(0)
    B, T, D = 8, 12, 16
    hidden, image = torch.randn(B, T, D), torch.randn(B, D)
    lengths = torch.tensor([12, 3, 7, 1, 12, 9, 5, 11])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    groups = torch.arange(B) // 2
    adv = torch.randn(B)[:, None].expand(B, T).contiguous()
    credit = ComposedCredit([VGPOCredit()])
    assert credit.batch_reductions == {"vgpo/focus_min": "min", "vgpo/focus_max": "max"}
    whole, _ = credit.token_advantages(adv, signals(slice(None), hidden, image, mask, groups))
    parts = [slice(0, 2), slice(2, 6), slice(6, 8)]  # whole groups
    stats: dict = {}
    for p in parts:
        for k, v in credit.batch_statistics(signals(p, hidden, image, mask, groups)).items():
            stats[k] = REDUCE[credit.batch_reductions[k]](stats[k], v) if k in stats else v
    pieces = [credit.token_advantages(adv[p], signals(p, hidden, image, mask, groups), stats)[0] for p in parts]
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=0, atol=1e-6)
    # Without the combined statistics each part min-maxes over itself: a different result.
    alone = [credit.token_advantages(adv[p], signals(p, hidden, image, mask, groups))[0] for p in parts]
    assert (torch.cat(alone) - whole).abs().max() > 1e-3


def test_methods_without_batch_statistics_and_loss_requests():
    assert SAYOCredit().batch_reductions == {} and ATRLCredit().batch_reductions == {}
    ease = EASECredit(layer=4)
    composed = ComposedCredit([SAYOCredit(), ease])
    req = composed.loss_request(6)
    assert req.grad_attention_layers == frozenset({4}) and req.image_attention_layers == frozenset({4})
    assert not req.hidden_states and not req.entropies  # SAYO's signals are not needed by a loss
    assert ComposedCredit([VGPOCredit()]).loss_request(6) == ComposedCredit([]).loss_request(6)
