"""Processor geometry: family, resized image sizes, visual-token grids, fingerprint, vision tokens.

Qwen-VL image processors resize an image of ``h x w`` pixels with ``smart_resize`` to
``(h', w')``, multiples of ``patch_size * merge_size`` with ``min_pixels <= h' w' <= max_pixels``;
the vision tower sees ``t x (h'/patch) x (w'/patch)`` patches (``grid_thw``, t = 1 for an
image) and the language model one ``<|image_pad|>`` token per ``merge_size**2`` patches.
Everything here is computed from the image size alone (no pixels decoded), which is what
lets the DataModule filter over-long prompts cheaply, and it agrees with the processor's
own output (checked again at collation).
"""

from __future__ import annotations

from dataclasses import dataclass

from visgrpo.models.families import FAMILIES

# Special tokens that must never appear in a response that goes into a training forward:
# image/video pads would be matched against vision features, the others delimit them.
VISION_TOKENS = (
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
)


@dataclass(frozen=True)
class Geometry:
    """The image-processor settings that decide resized sizes and token counts."""

    family: str
    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    def fingerprint(self) -> dict:
        """The processor fingerprint stored with evidence datasets (data_tools/schema.py)."""
        return {
            "family": self.family,
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
        }

    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        """``(h', w')`` of an ``height x width`` image after the processor's ``smart_resize``."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        h, w = smart_resize(
            int(height),
            int(width),
            factor=self.patch_size * self.merge_size,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
        )
        return int(h), int(w)

    def grid_thw(self, height: int, width: int) -> list[int]:
        """``[1, h'/patch, w'/patch]`` for one image."""
        h, w = self.resized_hw(height, width)
        return [1, h // self.patch_size, w // self.patch_size]

    def num_image_tokens(self, height: int, width: int) -> int:
        """Number of ``<|image_pad|>`` tokens the prompt holds for one image."""
        t, gh, gw = self.grid_thw(height, width)
        return t * gh * gw // (self.merge_size**2)


def family_of_processor(processor) -> str:
    """Family name of a Qwen-VL processor (by its class), e.g. ``qwen2_5_vl``."""
    name = type(processor).__name__
    for fam in FAMILIES.values():
        if fam.processor_class == name:
            return fam.name
    raise ValueError(
        f"processor class {name} is not a supported Qwen-VL processor; "
        f"valid: {', '.join(f.processor_class for f in FAMILIES.values())}"
    )


def processor_geometry(processor) -> Geometry:
    """Read family, patch/merge size and pixel budget from a loaded processor."""
    ip = processor.image_processor
    size = getattr(ip, "size", None)

    def _get(key: str, size_key: str) -> int:
        value = getattr(ip, key, None)
        if value is None and size is not None:
            value = size.get(size_key) if isinstance(size, dict) else getattr(size, size_key, None)
        if value is None:
            raise ValueError(
                f"image processor {type(ip).__name__} has neither {key} nor size.{size_key}"
            )
        return int(value)

    return Geometry(
        family=family_of_processor(processor),
        patch_size=int(ip.patch_size),
        merge_size=int(ip.merge_size),
        min_pixels=_get("min_pixels", "shortest_edge"),
        max_pixels=_get("max_pixels", "longest_edge"),
    )


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of :data:`VISION_TOKENS` present in ``tokenizer``'s vocabulary."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for t in VISION_TOKENS if t in vocab})


def eos_token_ids(tokenizer, generation_config=None) -> list[int]:
    """End-of-sequence ids: the tokenizer's EOS (``<|im_end|>``), its pad (``<|endoftext|>``)
    and those of the model's generation config."""
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    cfg_eos = getattr(generation_config, "eos_token_id", None) if generation_config else None
    if isinstance(cfg_eos, int):
        ids.add(cfg_eos)
    elif cfg_eos:
        ids.update(int(i) for i in cfg_eos)
    ids.discard(None)
    if not ids:
        raise ValueError("tokenizer has neither an eos nor a pad token")
    return sorted(ids)
