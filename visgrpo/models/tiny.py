"""Tiny random-weight Qwen-VL models of the real architectures, for tests and the demo.

``build_tiny(family, out_dir)`` writes a normal Hugging Face directory holding

* a random-weight instance of the family's real transformers class (a few layers,
  text hidden size 64, GQA with 4 query / 2 key-value heads, a small vision tower whose
  output width matches the text model),
* a word-level tokenizer (``tokenizers``) whose vocabulary holds the family's special
  tokens (``<|vision_start|>``, ``<|image_pad|>``, ``<|im_start|>``, ...), the
  reasoning tags and the words of a corpus, with exact decode round-trips (whitespace
  is tokenised too and the decoder fuses pieces),
* the family's real image processor class with its real patch and merge size (only the
  pixel budget is small, so images give a few dozen visual tokens), and
* the family's chat template,

so that ``AutoProcessor.from_pretrained(dir)`` and
``AutoModelForImageTextToText.from_pretrained(dir)`` load it like a released checkpoint.

Run ``python -m visgrpo.models.tiny --family qwen2_5_vl --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from visgrpo.models.families import SPECIAL_TOKENS, get_family

REASONING_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

# Words always in the vocabulary: chat scaffolding, the synthetic task's words, digits.
BASE_WORDS = """
system user assistant You are a helpful assistant . , ? ! : ; ' " ( ) [ ] { } - + * / = % #
the a an is are of in on at to and or what which how many colour color shape object image
picture left right top bottom middle center centre upper lower red green blue yellow purple
orange black white gray grey pink brown cyan circle square triangle star cross diamond
hexagon ellipse rectangle there answer think options option with letter number count
A B C D E F G H I J K L M N O P Q R S T U V W X Y Z
0 1 2 3 4 5 6 7 8 9 Locate box Answer Question Picture Video
""".split()  # noqa: SIM905 (a word list reads better as text)

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' and default_system %}"
    "<|im_start|>system\n{{ default_system }}<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Pre-tokenisation: single whitespace characters, runs of letters, single digits, and any
# other single character each become one piece; the decoder concatenates pieces.
PIECE_PATTERN = r"\s|[A-Za-z]+|\d|[^\sA-Za-z\d]"

# Text-model sizes shared by every family (small but architecturally complete).
TEXT_DIMS = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)
HEAD_DIM = 16  # hidden_size / num_attention_heads
MROPE_SECTION = [2, 3, 3]  # sums to HEAD_DIM / 2 (temporal, height, width)


def words_of(texts: Iterable[str]) -> list[str]:
    """Pieces of ``texts`` under :data:`PIECE_PATTERN` (whitespace excluded), in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for piece in re.findall(PIECE_PATTERN, text):
            if not piece.isspace():
                seen.setdefault(piece, None)
    return list(seen)


def build_tokenizer(corpus: Iterable[str] = ()):
    """A ``PreTrainedTokenizerFast`` with the Qwen-VL special tokens and a word-level vocabulary.

    Args:
        corpus: extra texts whose words join the vocabulary (e.g. a dataset's questions).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in ["[UNK]", " ", "\n", "\t", *BASE_WORDS, *words_of(corpus)]:
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=4096,
    )
    fast.add_tokens(list(REASONING_TAGS))
    fast.padding_side = "left"
    return fast


def _vision_processors(family_name: str, min_pixels: int, max_pixels: int):
    """The family's real image and video processor classes with a small pixel budget."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor, Qwen3VLVideoProcessor

    fam = get_family(family_name)
    kwargs = dict(
        patch_size=fam.patch_size,
        merge_size=fam.merge_size,
        temporal_patch_size=fam.temporal_patch_size,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    video_cls = Qwen3VLVideoProcessor if family_name == "qwen3_vl" else Qwen2VLVideoProcessor
    return Qwen2VLImageProcessor(**kwargs), video_cls(**kwargs)


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary half-dimension (``[2, 3, 3]`` for 16)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _model_config(family_name: str, tokenizer, text_dims: dict | None = None, vision_depth: int = 2,
                  vision_hidden: int = 32):
    import transformers

    fam = get_family(family_name)
    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    dims = dict(TEXT_DIMS, **(text_dims or {}))
    head_dim = dims["hidden_size"] // dims["num_attention_heads"]
    text = dict(
        dims,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(head_dim)},
    )
    hidden = dims["hidden_size"]
    vd, vh = vision_depth, vision_hidden
    common = dict(patch_size=fam.patch_size, spatial_merge_size=fam.merge_size, temporal_patch_size=2)
    if family_name == "qwen2_vl":
        vision = dict(common, depth=vd, embed_dim=vh, hidden_size=hidden, num_heads=2, mlp_ratio=2)
    elif family_name == "qwen2_5_vl":
        vision = dict(
            common, depth=vd, hidden_size=vh, intermediate_size=2 * vh, num_heads=2,
            out_hidden_size=hidden, fullatt_block_indexes=list(range(1, vd, 2)), window_size=112,
        )
    else:  # qwen3_vl
        text["head_dim"] = head_dim
        text["rope_parameters"]["mrope_interleaved"] = True
        vision = dict(
            common, depth=vd, hidden_size=vh, intermediate_size=2 * vh, num_heads=2,
            out_hidden_size=hidden, num_position_embeddings=256, deepstack_visual_indexes=[0],
        )
    config_cls = getattr(transformers, fam.config_class)
    return config_cls(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def build_tiny(
    family: str,
    out_dir: str | Path,
    *,
    corpus: Iterable[str] = (),
    seed: int = 0,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    default_system: str = "You are a helpful assistant.",
    hidden_size: int = TEXT_DIMS["hidden_size"],
    num_layers: int = TEXT_DIMS["num_hidden_layers"],
    vision_depth: int = 2,
    vision_hidden: int = 32,
) -> Path:
    """Write a tiny random-weight model directory of ``family`` to ``out_dir``.

    Args:
        family: ``qwen2_vl``, ``qwen2_5_vl`` or ``qwen3_vl``.
        out_dir: destination (created).
        corpus: texts whose words join the tokenizer vocabulary.
        seed: seed of the random weights.
        min_pixels: processor pixel floor (default: 4 merged tokens).
        max_pixels: processor pixel cap (default: 64 merged tokens, e.g. 224x224 for 28-px tokens).
        default_system: system prompt the chat template inserts ("" for none).
        hidden_size: text hidden size (4 query heads; MLP width twice the hidden size).
        num_layers: text decoder layers.
        vision_depth: vision-tower blocks (every second one full attention for Qwen2.5-VL).
        vision_hidden: vision-tower width (2 heads).

    Returns:
        ``out_dir`` as a Path.
    """
    import transformers

    fam = get_family(family)
    tp = fam.token_pixels
    min_pixels = min_pixels or 4 * tp * tp
    max_pixels = max_pixels or 64 * tp * tp
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(corpus)
    image_processor, video_processor = _vision_processors(family, min_pixels, max_pixels)
    processor_cls = getattr(transformers, fam.processor_class)
    template = CHAT_TEMPLATE.replace(
        "default_system", json.dumps(default_system) if default_system else "''"
    )
    processor = processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=template,
    )
    processor.save_pretrained(out)

    torch.manual_seed(seed)
    text_dims = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers)
    config = _model_config(family, tokenizer, text_dims, vision_depth, vision_hidden)
    model_cls = getattr(transformers, fam.model_class)
    model = model_cls(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight Qwen-VL model directory.")
    parser.add_argument("--family", required=True, choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", help="optional text file whose words join the vocabulary")
    args = parser.parse_args(argv)
    corpus = Path(args.corpus).read_text().splitlines() if args.corpus else ()
    out = build_tiny(args.family, args.out, corpus=corpus, seed=args.seed)
    n = sum(p.numel() for p in __import__("transformers").AutoModelForImageTextToText.from_pretrained(out).parameters())
    print(f"wrote tiny {args.family} ({n:,} parameters) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
