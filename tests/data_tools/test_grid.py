"""The token grid of data_tools.grid equals the real processors' ``image_grid_thw``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data_tools.grid import load_processor_grid
from visgrpo.data.geometry import smart_resize_of
from visgrpo.models.families import FAMILIES as FAMILY_TABLE

FAMILIES = tuple(FAMILY_TABLE)
# (min_pixels, max_pixels) settings; small max_pixels keep the resized images small.
SETTINGS = [(3136, 20000), (4096, 65536), (256, 5000), (50000, 120000)]


def _random_sizes(n: int, seed: int) -> list[tuple[int, int]]:
    """Random (h, w), 2..600 px, aspect ratio below the processors' limit of 200."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        h, w = (int(v) for v in rng.integers(2, 601, size=2))
        if max(h, w) / min(h, w) < 200:
            out.append((h, w))
    return out


def _check(family: str, lo: int, hi: int, sizes, backend: str = "torchvision") -> None:
    grid = load_processor_grid(family, lo, hi, backend=backend)
    images = [Image.new("RGB", (w, h), (i % 255, 7, 9)) for i, (h, w) in enumerate(sizes)]
    ref = grid.image_processor(images=images, return_tensors="np")["image_grid_thw"]  # [n, 3]
    ours = grid.grid_thw_many([h for h, _ in sizes], [w for _, w in sizes])  # [n, 3]
    np.testing.assert_array_equal(ours, np.asarray(ref))
    # the scalar path and the token grid agree with the vectorised one
    h0, w0 = sizes[0]
    assert grid.grid_thw(h0, w0) == list(np.asarray(ref)[0])
    toks = grid.tokens_hw_many([h for h, _ in sizes], [w for _, w in sizes])
    np.testing.assert_array_equal(toks * grid.merge_size, ours[:, 1:])
    # the resized size respects the pixel budget up to the processor's rounding to one factor
    hw = grid.resized_hw_many([h for h, _ in sizes], [w for _, w in sizes])
    assert (hw % grid.token_pixels == 0).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_grid_equals_processor_fast(family):
    # 40 random sizes x 2 settings per family (the exhaustive sweep is marked slow below)
    for k, (lo, hi) in enumerate(SETTINGS[:2]):
        _check(family, lo, hi, _random_sizes(40, seed=k))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torchvision", "pil"])
@pytest.mark.parametrize("family", FAMILIES)
def test_grid_equals_processor_exhaustive(family, backend):
    # 300 random sizes x 4 min/max settings x each family x both backends
    for k, (lo, hi) in enumerate(SETTINGS):
        _check(family, lo, hi, _random_sizes(300, seed=100 + k), backend=backend)


# The released checkpoints' preprocessor_config.json size bounds (Qwen2-VL-7B / Qwen2.5-VL-7B:
# 56*56 and 28*28*16384; Qwen3-VL-8B: 256*256 and 4096*4096), written out here by hand.
RELEASED_PIXELS = {
    "qwen2_vl": (56 * 56, 28 * 28 * 16384),
    "qwen2_5_vl": (56 * 56, 28 * 28 * 16384),
    "qwen3_vl": (256 * 256, 4096 * 4096),
}


def test_family_settings_equal_the_processors_own():
    """The family table against transformers itself: patch / merge / temporal sizes of each
    model config's vision tower and of the processor classes, their image mean / std and
    minimum size, and the released size bounds above (class defaults differ for max_pixels).
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLVideoProcessor,
    )

    configs = {"qwen2_vl": Qwen2VLConfig, "qwen2_5_vl": Qwen2_5_VLConfig, "qwen3_vl": Qwen3VLConfig}
    # Qwen3-VL has no image-processor class of its own (its checkpoints name Qwen2VLImageProcessor
    # with other values): its video processor carries the family's patch, merge and mean / std.
    processors = {"qwen2_vl": Qwen2VLImageProcessor(), "qwen2_5_vl": Qwen2VLImageProcessor(),
                  "qwen3_vl": Qwen3VLVideoProcessor()}
    assert set(FAMILY_TABLE) == set(configs)
    for family in FAMILY_TABLE:
        vision, ref = configs[family]().vision_config, processors[family]
        g = load_processor_grid(family)
        ip = g.image_processor
        assert g.fingerprint() == {
            "family": family, "patch_size": vision.patch_size, "merge_size": vision.spatial_merge_size,
            "min_pixels": RELEASED_PIXELS[family][0], "max_pixels": RELEASED_PIXELS[family][1],
        }, family
        assert (ref.patch_size, ref.merge_size) == (vision.patch_size, vision.spatial_merge_size)
        assert ip.temporal_patch_size == ref.temporal_patch_size == vision.temporal_patch_size
        assert list(ip.image_mean) == list(ref.image_mean) and list(ip.image_std) == list(ref.image_std)
        if family != "qwen3_vl":  # the class's own minimum equals the released one
            assert ref.size["shortest_edge"] == g.min_pixels
    assert Qwen2VLImageProcessor().size["longest_edge"] == 1003520  # why the table holds max_pixels
    # 224 x 224: Qwen2/2.5-VL keep it (224 = 8 * 28 -> grid 16 x 16 patches of 14 px);
    # Qwen3-VL's min_pixels 65536 = 256^2 > 224^2 upscales it to 256 x 256 (16 x 16 of 16 px).
    assert load_processor_grid("qwen2_5_vl").resized_hw(224, 224) == (224, 224)
    assert load_processor_grid("qwen3_vl").resized_hw(224, 224) == (256, 256)
    # overrides replace only the given bound
    g = load_processor_grid("qwen2_vl", max_pixels=50000)
    assert (g.min_pixels, g.max_pixels) == (3136, 50000)
    assert g.resized_hw(1000, 1000) == (196, 196)  # floor(1000/sqrt(20)/28)*28 = floor(7.98)*28


def test_smart_resize_is_the_processor_modules_own():
    g = load_processor_grid("qwen2_5_vl")
    import transformers.models.qwen2_vl.image_processing_qwen2_vl as mod

    assert smart_resize_of(g.image_processor) is mod.smart_resize
    with pytest.raises(ValueError, match="aspect ratio"):
        g.resized_hw(10, 2500)


def test_unknown_processor_lists_families(tmp_path):
    with pytest.raises(ValueError, match="qwen2_5_vl"):
        load_processor_grid("llava")
    with pytest.raises(ValueError, match="cannot tell the model family"):
        load_processor_grid(str(tmp_path))


@pytest.mark.parametrize("family", ["qwen3_vl"])
def test_model_directory_matches_runtime_geometry(tiny_model_dirs, family):
    from transformers import AutoProcessor

    from visgrpo.data.geometry import processor_geometry

    path = tiny_model_dirs[family]
    g = load_processor_grid(path)
    proc = AutoProcessor.from_pretrained(path)
    assert g.fingerprint() == processor_geometry(proc).fingerprint()
    sizes = _random_sizes(30, seed=7)
    ref = proc.image_processor(images=[Image.new("RGB", (w, h)) for h, w in sizes])["image_grid_thw"]
    np.testing.assert_array_equal(
        g.grid_thw_many([h for h, _ in sizes], [w for _, w in sizes]), np.asarray(ref)
    )
    g2 = load_processor_grid(path, min_pixels=1024, max_pixels=9000)
    assert (g2.min_pixels, g2.max_pixels) == (1024, 9000)
