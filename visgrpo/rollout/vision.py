"""Vision special tokens of the Qwen-VL tokenizers and the end-of-sequence ids.

A response that goes into a training forward must never hold an image/video pad (it would
be matched against vision features) nor the tokens that delimit them; the engines find and
remove or reject them with :func:`vision_token_ids`. The image geometry (resize, token grid,
fingerprint) is :mod:`visgrpo.data.geometry`.
"""

from __future__ import annotations

# Special tokens that must never appear in a response that goes into a training forward:
# image/video pads would be matched against vision features, the others delimit them.
VISION_TOKENS = (
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
)


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of :data:`VISION_TOKENS` present in ``tokenizer``'s vocabulary."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for t in VISION_TOKENS if t in vocab})


def eos_token_ids(tokenizer, generation_config=None) -> list[int]:
    """End-of-sequence ids: the tokenizer's EOS (``<|im_end|>``), its pad (``<|endoftext|>``)
    and those of the model's generation config.
    """
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
