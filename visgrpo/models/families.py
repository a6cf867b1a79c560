"""Facts about the supported Qwen-VL families, in one place.

The image-processor settings are those of the released checkpoints'
``preprocessor_config.json`` (Qwen2-VL-7B-Instruct, Qwen2.5-VL-7B-Instruct: patch 14,
merge 2, min_pixels 3136 = 56*56, max_pixels 12845056 = 28*28*16384; Qwen3-VL-8B-Instruct:
patch 16, merge 2, ``size = {shortest_edge: 65536, longest_edge: 16777216}``). The
transformers class defaults differ (e.g. max_pixels 1003520 for Qwen2VLImageProcessor),
which is why a family name resolves to these explicit values.

A merged visual token covers ``patch_size * merge_size`` pixels of the resized image:
28 px for Qwen2/2.5-VL, 32 px for Qwen3-VL (docs/methods.md, Evidence-to-token mapping).

The family of a loaded processor (:func:`family_of_processor`) and of a model or processor
directory (:func:`family_of_dir`) are found here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
    checkpoint: str  # the released checkpoint these settings are read from
    image_mean: tuple[float, float, float]  # its image normalisation
    image_std: tuple[float, float, float]

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
        checkpoint="Qwen/Qwen2-VL-7B-Instruct",
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
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
        checkpoint="Qwen/Qwen2.5-VL-7B-Instruct",
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
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
        checkpoint="Qwen/Qwen3-VL-8B-Instruct",
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
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


def family_of_processor(processor) -> str:
    """Family name of a loaded Qwen-VL processor (by its class), e.g. ``qwen2_5_vl``."""
    name = type(processor).__name__
    for fam in FAMILIES.values():
        if fam.processor_class == name:
            return fam.name
    raise ValueError(
        f"processor class {name} is not a supported Qwen-VL processor; "
        f"valid: {', '.join(f.processor_class for f in FAMILIES.values())}"
    )


def family_of_dir(path: str | Path) -> str:
    """Family name of a model directory (its ``AutoConfig`` ``model_type``) or of a
    processor-only directory (the ``processor_class`` its processor config names).

    Remote code is never trusted: only transformers' own configuration classes are read.

    Raises:
        ValueError: neither names a supported family.
    """
    # transformers is imported here, not at the top: this module is the light table of facts.
    from transformers import AutoConfig
    from transformers.processing_utils import ProcessorMixin

    path = Path(path)
    if (path / "config.json").exists():
        try:
            model_type = AutoConfig.from_pretrained(str(path), trust_remote_code=False).model_type
        except ValueError:  # a model_type transformers does not know (or remote code only)
            model_type = None
        if model_type in FAMILIES:
            return model_type
    else:  # a processor directory: its processor config names the processor class
        cfg, _ = ProcessorMixin.get_processor_dict(str(path))
        by_class = {f.processor_class: f.name for f in FAMILIES.values()}
        if cfg.get("processor_class") in by_class:
            return by_class[cfg["processor_class"]]
    raise ValueError(
        f"{path}: cannot tell the model family (no config.json with a model_type among "
        f"{', '.join(sorted(FAMILIES))} and no processor_class among "
        f"{', '.join(f.processor_class for f in FAMILIES.values())})"
    )
