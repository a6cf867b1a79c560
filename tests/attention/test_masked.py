"""The masked-image signal: patch blackening on the processor's own grid (pixel-exact with
blackening the resized image and running the real processor), per-row seeds that do not
depend on micro-batching, and the no-grad masked forward of ``policy_forward``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visgrpo.attention.forward import policy_forward
from visgrpo.attention.masked import image_seeds, pixel_layout, row_seeds
from visgrpo.data.perturb import Perturbation, PixelLayout, mix_seed, perturb_pixels
from visgrpo.data.signals import SignalRequest
from visgrpo.models.families import get_family


def _processor(family: str):
    from transformers import Qwen2VLImageProcessor

    fam = get_family(family)
    return Qwen2VLImageProcessor(patch_size=fam.patch_size, merge_size=fam.merge_size,
                                 temporal_patch_size=fam.temporal_patch_size,
                                 image_mean=list(fam.image_mean), image_std=list(fam.image_std),
                                 size={"shortest_edge": 16, "longest_edge": 10**7})


@pytest.mark.parametrize(("family", "cells"), [("qwen2_5_vl", 1), ("qwen2_5_vl", 2), ("qwen3_vl", 1)])
def test_blackening_equals_processing_a_blackened_image(family, cells):
    """Blackening rows == the processor's output for the resized image with those pixel
    cells set to 0 (uint8 black), the authors' loop over ``range(0, h, size)``.
    """
    from PIL import Image

    fam = get_family(family)
    proc = _processor(family)
    side = fam.patch_size * fam.merge_size
    h, w = 4 * side, 3 * side  # already a multiple of the merged token: no resampling
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    size = cells * fam.patch_size
    pert = Perturbation("patch_blackening", 0.5, size)
    seed = 1234
    dark = torch.rand(math.ceil(h / fam.patch_size / cells) * math.ceil(w / fam.patch_size / cells),
                      generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < 0.5
    black = img.copy()
    k = 0
    for y in range(0, h, size):  # the authors' loop (perc_utils.random_patch_blackening)
        for x in range(0, w, size):
            if dark[k]:
                black[y:y + size, x:x + size] = 0
            k += 1
    enc = proc(images=[Image.fromarray(img)], return_tensors="pt")
    want = proc(images=[Image.fromarray(black)], return_tensors="pt")["pixel_values"]
    layout = PixelLayout(fam.patch_size, fam.merge_size, fam.temporal_patch_size, fam.image_mean, fam.image_std)
    got = perturb_pixels(enc["pixel_values"], enc["image_grid_thw"], layout, pert, [seed])
    assert 0 < int(dark.sum()) < dark.numel()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_patch_size_must_be_a_multiple_of_the_processor_patch():
    layout = PixelLayout(14, 2, 2, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="multiple"):
        perturb_pixels(torch.zeros(4, 3 * 2 * 14 * 14), torch.tensor([[1, 2, 2]]), layout,
                       Perturbation(prob=0.5, patch_size=10), [0])
    with pytest.raises(KeyError, match="perturbation"):
        Perturbation("nope")


def test_row_seeds_follow_group_and_ordinal_not_position():
    full = row_seeds(torch.tensor([3, 3, 5, 5]), 7)
    assert row_seeds(torch.tensor([5, 5]), 7) == full[2:]
    assert len(set(full)) == 4 and row_seeds(torch.tensor([3, 3, 5, 5]), 8) != full
    assert image_seeds([11, 12], [2, 1]) == [mix_seed(11, 0), mix_seed(11, 1), mix_seed(12, 0)]


def test_union_refuses_two_different_perturbations():
    a = SignalRequest(masked_logp=Perturbation(prob=0.5))
    assert a.union(SignalRequest()).masked_logp == a.masked_logp
    with pytest.raises(ValueError, match="different perturbations"):
        a.union(SignalRequest(masked_logp=Perturbation(prob=0.6)))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_masked_forward_matches_a_forward_on_blackened_pixels(tiny_models, family):
    model, _, batch = tiny_models[family]
    base = model
    pert = Perturbation(prob=0.5)
    counts = torch.tensor([2, 1])
    batch = {**batch, "group_ids": torch.tensor([0, 1]), "image_counts": counts,
             "pixel_counts": torch.tensor([0, 0])}
    out = policy_forward(model, batch, SignalRequest(masked_logp=pert), perturb_seed=99, share_images=False)
    assert out.masked_logp is not None and not out.masked_logp.requires_grad
    layout = pixel_layout(base)
    seeds = image_seeds(row_seeds(torch.tensor([0, 1]), 99), [2, 1])
    pix = perturb_pixels(batch["pixel_values"], batch["image_grid_thw"], layout, pert, seeds)
    want = policy_forward(model, {**batch, "pixel_values": pix}, None, share_images=False).logp
    torch.testing.assert_close(out.masked_logp, want.detach(), atol=1e-6, rtol=0)
    assert float((out.masked_logp - out.logp.detach()).abs().max()) > 1e-4  # the mask matters
    again = policy_forward(model, batch, SignalRequest(masked_logp=pert), perturb_seed=99, share_images=False)
    assert torch.equal(again.masked_logp, out.masked_logp)  # same step seed: same masks
    none = policy_forward(model, batch, SignalRequest(masked_logp=Perturbation(prob=0.0)), share_images=False)
    torch.testing.assert_close(none.masked_logp, out.logp.detach(), atol=1e-6, rtol=0)


def test_text_only_batch_gives_the_real_logprobs(tiny_models):
    model, _, batch = tiny_models["qwen2_5_vl"]
    batch = {**batch, "image_counts": torch.tensor([2, 1])}
    out = policy_forward(model, batch, SignalRequest(masked_logp=Perturbation()), share_images=False)
    fake = {k: v for k, v in batch.items() if k not in ("pixel_values", "image_grid_thw")}
    fake["input_ids"] = batch["input_ids"].masked_fill(batch["input_ids"] == model.config.image_token_id, 0)
    text = policy_forward(model, fake, SignalRequest(masked_logp=Perturbation()), share_images=False)
    assert torch.equal(text.masked_logp, text.logp.detach()) and text.masked_logp.shape == out.logp.shape


def test_one_mask_per_prompt_is_shared_by_the_group_and_by_the_encoding(tiny_models):
    model, _, batch = tiny_models["qwen2_5_vl"]
    one = {k: (v[1:] if k in ("input_ids", "attention_mask", "mm_token_type_ids", "response_mask") else v)
           for k, v in batch.items()}  # the second prompt (one image) ...
    n_pix = int(batch["image_grid_thw"][2].prod())
    one["pixel_values"], one["image_grid_thw"] = batch["pixel_values"][-n_pix:], batch["image_grid_thw"][2:]
    rep = {k: (torch.cat([v, v]) if k in ("input_ids", "attention_mask", "mm_token_type_ids", "response_mask",
                                            "pixel_values", "image_grid_thw") else v) for k, v in one.items()}
    rep.update(group_ids=torch.tensor([4, 4]), image_counts=torch.tensor([1, 1]),
               pixel_counts=torch.tensor([n_pix, n_pix]))  # ... twice, as a group of G = 2
    prompt = Perturbation(prob=0.5, per_response=False)
    shared = policy_forward(model, rep, SignalRequest(masked_logp=prompt), perturb_seed=3)
    plain = policy_forward(model, rep, SignalRequest(masked_logp=prompt), perturb_seed=3, share_images=False)
    torch.testing.assert_close(shared.masked_logp, plain.masked_logp, atol=1e-6, rtol=0)
    torch.testing.assert_close(shared.masked_logp[0], shared.masked_logp[1], atol=1e-6, rtol=0)
    own = policy_forward(model, rep, SignalRequest(masked_logp=Perturbation(prob=0.5)), perturb_seed=3)
    assert float((own.masked_logp[0] - own.masked_logp[1]).abs().max()) > 1e-6  # one mask per response
