"""Facts about the supported Qwen-VL families, in one place.

The image-processor settings are those of the released checkpoints'
``preprocessor_config.json`` (Qwen2-VL-7B-Instruct, Qwen2.5-VL-7B-Instruct: patch 14,
merge 2, min_pixels 3136 = 56*56, max_pixels 12845056 = 28*28*16384; Qwen3-VL-8B-Instruct:
patch 16, merge 2, ``size = {shortest_edge: 65536, longest_edge: 16777216}``). The
transformers class defaults differ (e.g. max_pixels 1003520 for Qwen2VLImageProcessor),
which is why a family name resolves to these explicit values.

A merged visual token covers ``patch_size * merge_size`` pixels of the resized image:
28 px for Qwen2/2.5-VL, 32 px for Qwen3-VL (docs/methods.md, Evidence-to-token mapping).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """Static description of one model family."""

    name: str
    model_class: str  # transformers class name of the ForConditionalGeneration model
    config_class: str
    processor_class: str
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int  # released checkpoints' setting
    max_pixels: int
    box_coordinates: str  # how grounding answers are expressed: "resized_pixels" | "thousand"

    @property
    def token_pixels(self) -> int:
        """Side in pixels (resized image) of one merged visual token."""
        return self.patch_size * self.merge_size


FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family(
        name="qwen2_vl",
        model_class="Qwen2VLForConditionalGeneration",
        config_class="Qwen2VLConfig",
        processor_class="Qwen2VLProcessor",
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=3136,
        max_pixels=12845056,
        box_coordinates="thousand",
    ),
    "qwen2_5_vl": Family(
        name="qwen2_5_vl",
        model_class="Qwen2_5_VLForConditionalGeneration",
        config_class="Qwen2_5_VLConfig",
        processor_class="Qwen2_5_VLProcessor",
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=3136,
        max_pixels=12845056,
        box_coordinates="resized_pixels",
    ),
    "qwen3_vl": Family(
        name="qwen3_vl",
        model_class="Qwen3VLForConditionalGeneration",
        config_class="Qwen3VLConfig",
        processor_class="Qwen3VLProcessor",
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=65536,
        max_pixels=16777216,
        box_coordinates="thousand",
    ),
}

# Special tokens shared by the Qwen-VL tokenizers (names as in the released vocabularies).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def get_family(name: str) -> Family:
    """Return the :class:`Family` called ``name``; unknown names list the valid ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; valid: {', '.join(sorted(FAMILIES))}") from None


def family_of_model_type(model_type: str) -> Family:
    """Map a transformers ``config.model_type`` (``qwen2_5_vl``, ``qwen3_vl``, ...) to a family."""
    for fam in FAMILIES.values():
        if model_type == fam.name:
            return fam
    raise KeyError(
        f"model_type {model_type!r} is not a supported Qwen-VL family; valid: {', '.join(sorted(FAMILIES))}"
    )
