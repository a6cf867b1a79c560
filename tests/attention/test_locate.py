"""Image-token locator on hand-built padded multi-image batches."""

from __future__ import annotations

import pytest
import torch

from visgrpo.attention.locate import locate_image_tokens

V = 9  # image token id; 5 = text, 0 = pad


def test_left_padded_two_images_then_one():
    # sample 0 (left-padded): pad pad x [V V V V] x [V V] x  -> image A (grid 4x4 patches ->
    #   2x2 merged = 4 tokens) at 3..6, image B (2x4 patches -> 1x2 = 2 tokens) at 8..9.
    # sample 1: x [V V V V V V] x x x x -> image C (4x6 patches -> 2x3 = 6 tokens) at 1..6.
    ids = torch.tensor([[0, 0, 5, V, V, V, V, 5, V, V, 5], [5, V, V, V, V, V, V, 5, 5, 5, 5]])
    am = torch.tensor([[0, 0] + [1] * 9, [1] * 11])
    grid = torch.tensor([[1, 4, 4], [1, 2, 4], [1, 4, 6]])
    r = locate_image_tokens(ids, am, V, grid, merge_size=2)
    assert r.positions.tolist() == [[3, 4, 5, 6, 8, 9], [1, 2, 3, 4, 5, 6]]
    assert r.mask.all()
    assert r.image_index.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]
    # A is 2x2 row-major: (0,0) (0,1) (1,0) (1,1); B is 1x2; C is 2x3.
    assert r.row.tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]]
    assert r.col.tolist() == [[0, 1, 0, 1, 0, 1], [0, 1, 2, 0, 1, 2]]
    assert r.counts.tolist() == [6, 6]
    assert r.images_per_sample.tolist() == [2, 1]
    assert r.grid_hw.tolist() == [[2, 2], [1, 2], [2, 3]]


def test_right_padding_uneven_counts_and_imageless_sample():
    # sample 0: x [V V] x pad pad (image 1x2 merged); sample 1: text only;
    # sample 2: [V V V V] x x (image 2x2 merged), then right padding none.
    ids = torch.tensor([[5, V, V, 5, 0, 0], [5, 5, 5, 0, 0, 0], [V, V, V, V, 5, 5]])
    am = (ids != 0).long()
    grid = torch.tensor([[1, 2, 4], [1, 4, 4]])
    r = locate_image_tokens(ids, am, V, grid, merge_size=2)
    assert r.positions.tolist() == [[1, 2, 0, 0], [0, 0, 0, 0], [0, 1, 2, 3]]
    assert r.mask.tolist() == [[True, True, False, False], [False] * 4, [True] * 4]
    assert r.row.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]
    assert r.col.tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]]
    assert r.images_per_sample.tolist() == [1, 0, 1]
    assert r.counts.tolist() == [2, 0, 4]


def test_masked_image_ids_are_ignored():
    # A pad position that happens to carry the image id does not count.
    ids = torch.tensor([[V, 5, V, V]])
    r = locate_image_tokens(ids, torch.tensor([[0, 1, 1, 1]]), V, torch.tensor([[1, 2, 4]]), 2)
    assert r.positions.tolist() == [[2, 3]]


def test_count_mismatch_is_a_clear_error():
    ids = torch.tensor([[5, V, V, V]])
    with pytest.raises(ValueError, match="hold 3 image tokens .* implies 2"):
        locate_image_tokens(ids, None, V, torch.tensor([[1, 2, 4]]), 2)


def test_image_split_across_samples_is_an_error():
    # 3 + 3 tokens in the ids, but the grids say 2 + 4: sample 0 would own a partial image.
    ids = torch.tensor([[V, V, V], [V, V, V]])
    with pytest.raises(ValueError, match="sample 0: .* whole images"):
        locate_image_tokens(ids, None, V, torch.tensor([[1, 2, 4], [1, 4, 4]]), 2)


def test_non_contiguous_image_is_an_error():
    ids = torch.tensor([[V, 5, V, V, V]])
    with pytest.raises(ValueError, match="sample 0: image 0 tokens are not contiguous"):
        locate_image_tokens(ids, None, V, torch.tensor([[1, 4, 4]]), 2)


def test_processor_batch(tiny_model_dirs, rl_batch):
    """On a real processor batch the located counts equal prod(grid) / 4 per image."""
    from transformers import AutoConfig

    path = tiny_model_dirs["qwen2_5_vl"]
    batch = rl_batch(path)

    cfg = AutoConfig.from_pretrained(path)
    r = locate_image_tokens(
        batch["input_ids"], batch["attention_mask"], cfg.image_token_id, batch["image_grid_thw"], 2
    )
    per_image = (batch["image_grid_thw"].prod(1) // 4).tolist()
    assert r.counts.tolist() == [per_image[0] + per_image[1], per_image[2]]
    assert bool((batch["input_ids"].gather(1, r.positions)[r.mask] == cfg.image_token_id).all())
