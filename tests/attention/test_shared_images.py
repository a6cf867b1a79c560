"""Encoding each prompt's images once per group: same log-probs, attention, hidden states and
gradients as running the vision tower on every repeated row.
"""

from __future__ import annotations

import pytest
import torch

from visgrpo.attention.forward import policy_forward
from visgrpo.attention.shared_images import shared_image_plan
from visgrpo.data.signals import SignalRequest

ORDER = [0, 1, 0, 1, 1, 0]  # rows -> prompt (groups interleaved, G = 3)


def test_plan_by_hand():
    # rows: prompt A (2 images: 4 + 6 pixel rows), prompt B (1 image: 8 rows), A again, B again
    groups = torch.tensor([7, 9, 7, 9])
    pixel_counts = torch.tensor([10, 8, 10, 8])
    image_counts = torch.tensor([2, 1, 2, 1])
    pixel_rows, grid_rows, image_index = shared_image_plan(groups, pixel_counts, image_counts)
    assert pixel_rows.tolist() == list(range(0, 18))  # rows 0 and 1 are encoded
    assert grid_rows.tolist() == [0, 1, 2]
    assert image_index.tolist() == [0, 1, 2, 0, 1, 2]  # every slot -> its encoded image
    assert shared_image_plan(torch.tensor([0, 1]), torch.tensor([4, 4]), torch.tensor([1, 1])) is None


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_shared_images_equal_per_row_encoding(family, tiny_models, grouped_batch):
    model = tiny_models[family][0]
    batch = grouped_batch(tiny_models[family][2], ORDER)
    n = model.config.get_text_config().num_hidden_layers
    request = SignalRequest(image_attention_layers=frozenset({n - 1}), grad_attention_layers=frozenset({1}),
                            hidden_states=True)
    results, grads, tower_rows = {}, {}, {}
    for share in (False, True):
        model.zero_grad(set_to_none=True)
        seen = []
        hook = model.model.visual.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].shape[0]))
        out = policy_forward(model, batch, request, probe_chunk=3, share_images=share, share_prefix=False)
        hook.remove()
        tower_rows[share] = sum(seen)
        loss = out.logp.sum() + out.image_attention[1].pow(2).sum() + out.hidden.pow(2).mean()
        loss.backward()
        results[share] = out
        grads[share] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    # the tower saw every repeated pixel row, then only the rows of one row per group
    assert tower_rows[False] == batch["pixel_values"].shape[0]
    assert tower_rows[True] == int(batch["pixel_counts"][:2].sum())  # rows 0 and 1: one per prompt
    a, b = results[False], results[True]
    torch.testing.assert_close(b.logp, a.logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.image_attention[n - 1], a.image_attention[n - 1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.hidden, a.hidden, rtol=1e-5, atol=1e-5)
    assert grads[False].keys() == grads[True].keys()
    assert any("visual" in k for k in grads[True])  # the tower is trained through the shared features
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], rtol=1e-4, atol=1e-5, msg=k)
