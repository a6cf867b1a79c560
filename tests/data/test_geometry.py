"""Processor geometry (visgrpo.data.geometry): the one source of the token grid and of the
processor fingerprint, shared by the training side and the data tools.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visgrpo.data.geometry import FINGERPRINT_FIELDS, Geometry, processor_geometry, smart_resize_of


def test_grid_by_hand_and_fingerprint():
    g = Geometry("qwen2_5_vl", patch_size=14, merge_size=2, min_pixels=3136, max_pixels=12845056)
    # 224 x 224 = 8 x 28 px: unchanged; 16 x 16 patches of 14 px, 8 x 8 = 64 image tokens.
    assert g.resized_hw(224, 224) == (224, 224) and g.grid_thw(224, 224) == [1, 16, 16]
    assert g.num_image_tokens(224, 224) == 64 and g.token_pixels == 28
    # 100 x 300: round(100/28) = 4 -> 112, round(300/28) = 11 -> 308 (within the budget)
    assert g.resized_hw(100, 300) == (112, 308)
    np.testing.assert_array_equal(g.tokens_hw_many([224, 100, 224], [224, 300, 224]), [[8, 8], [4, 11], [8, 8]])
    np.testing.assert_array_equal(g.grid_thw_many([100], [300]), [[1, 8, 22]])
    assert g.fingerprint() == {"family": "qwen2_5_vl", "patch_size": 14, "merge_size": 2,
                               "min_pixels": 3136, "max_pixels": 12845056}
    assert tuple(g.fingerprint()) == FINGERPRINT_FIELDS


def test_data_tools_use_the_same_geometry_and_fingerprint():
    from data_tools.grid import ProcessorGrid, load_processor_grid
    from visgrpo.data.schema import FINGERPRINT_KEYS

    grid = load_processor_grid("qwen3_vl")
    assert isinstance(grid, ProcessorGrid) and isinstance(grid, Geometry)
    assert ProcessorGrid.fingerprint is Geometry.fingerprint and FINGERPRINT_KEYS == FINGERPRINT_FIELDS
    plain = Geometry(**grid.fingerprint())  # the training side's geometry, no processor object
    assert plain.fingerprint() == grid.fingerprint()
    assert grid.smart_resize is smart_resize_of(grid.image_processor)
    sizes = [(224, 224), (37, 511), (600, 90)]
    np.testing.assert_array_equal(plain.grid_thw_many(*zip(*sizes, strict=True)),
                                  grid.grid_thw_many(*zip(*sizes, strict=True)))


@pytest.mark.parametrize("fam", ["qwen2_vl", "qwen3_vl"])
def test_processor_geometry_matches_the_processor(tiny_model_dirs, fam):
    from transformers import AutoProcessor

    from data_tools.grid import load_processor_grid

    path = tiny_model_dirs[fam]
    proc = AutoProcessor.from_pretrained(path)
    geom = processor_geometry(proc)
    assert geom.smart_resize is smart_resize_of(proc.image_processor)
    assert geom.fingerprint() == load_processor_grid(path).fingerprint()  # what `masks` stores
    sizes = [(56, 56), (90, 33), (130, 200)]
    ref = proc.image_processor(images=[Image.new("RGB", (w, h)) for h, w in sizes])["image_grid_thw"]
    np.testing.assert_array_equal(geom.grid_thw_many(*zip(*sizes, strict=True)), np.asarray(ref))
    assert [geom.num_image_tokens(h, w) for h, w in sizes] == [int(t * a * b) // 4 for t, a, b in ref.tolist()]
