"""The GPU check's workspace: a random-weight model of a released size, data and inputs.

Nothing can be downloaded on the GPU machine, so the model is built from config values:
``visgrpo.models.tiny.build_tiny`` writes the tokenizer, the real Qwen2.5-VL processor and
chat template (and, for ``--size tiny``, the model itself); for ``3b`` / ``7b`` the model is
then replaced by a random-weight ``Qwen2_5_VLForConditionalGeneration`` whose config holds
the released checkpoints' sizes (Qwen/Qwen2.5-VL-3B-Instruct and -7B-Instruct
``config.json``: text and vision dimensions, vocabulary, rotary sections, tied embeddings).
The tokenizer stays word-level; for the released sizes its vocabulary is filled with
letter words up to about the released vocabulary size, so that sampled token ids decode to
text (ids beyond the tokenizer, under 1%, decode to nothing).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

FAMILY = "qwen2_5_vl"
TOKEN_PIXELS = 28  # patch 14 x spatial merge 2

# Shared vision tower of the released Qwen2.5-VL 3B and 7B checkpoints.
VISION_RELEASED = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, hidden_act="silu",
    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
)
ROPE_RELEASED = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}


@dataclass(frozen=True)
class Size:
    """A model size and the work sizes of the check.

    Args:
        name: ``tiny``, ``3b`` or ``7b``.
        text: text-config values of the released checkpoint (``None``: build_tiny's model).
        tie_embeddings: the released checkpoint ties ``lm_head`` to the embeddings.
        image_tokens: merged visual tokens per image (a square number).
        max_new_tokens: response budget of the rollouts.
        prompts: prompts per training step; ``generations``: responses per prompt (G).
        micro_batch: responses per forward/backward.
        steps: training steps per credit method.
        probe_response: response tokens of the probe exactness / memory inputs.
    """

    name: str
    text: dict | None
    tie_embeddings: bool
    image_tokens: int
    max_new_tokens: int
    prompts: int = 2
    generations: int = 4
    micro_batch: int = 4
    steps: int = 2
    probe_response: int = 256
    vision: dict = field(default_factory=lambda: dict(VISION_RELEASED))


SIZES = {
    "tiny": Size("tiny", None, False, image_tokens=64, max_new_tokens=16, steps=2, probe_response=32),
    "3b": Size(
        "3b",
        dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
             num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
             rms_norm_eps=1e-6, rope_parameters=ROPE_RELEASED),
        tie_embeddings=True, image_tokens=1024, max_new_tokens=256,
    ),
    "7b": Size(
        "7b",
        dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
             num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000,
             rms_norm_eps=1e-6, rope_parameters=ROPE_RELEASED),
        tie_embeddings=False, image_tokens=1024, max_new_tokens=256,
    ),
}


def spread_reward(completion: str, sample=None, **kwargs):
    """A reward in [0, 1] that differs between completions (a hash of the text).

    A random-weight policy never answers correctly, so accuracy rewards would be 0 for every
    response, DAPO would drop every group and the credit methods would reshape zero
    advantages. This reward gives every group a spread, so each step trains and EASE finds
    high-reward trajectories; it measures nothing about the answers.
    """
    from visgrpo.rewards.types import RewardValue

    return RewardValue((zlib.crc32(completion.encode()) % 1001) / 1000.0)


def image_side(size: Size) -> int:
    """Image side in pixels giving exactly ``size.image_tokens`` merged tokens."""
    g = int(round(size.image_tokens**0.5))
    if g * g != size.image_tokens:
        raise ValueError(f"image_tokens must be a square, got {size.image_tokens}")
    return g * TOKEN_PIXELS


COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}


def _coverage(lo: float, hi: float, n: int) -> torch.Tensor:
    """Overlap of ``[lo, hi]`` with each unit cell ``[i, i + 1]``, i < n; [n]."""
    i = torch.arange(n, dtype=torch.float64)
    return torch.clamp(torch.clamp(i + 1, max=float(hi)) - torch.clamp(i, min=float(lo)), min=0.0)


def build_rows(size: Size, num: int, seed: int = 0) -> list[dict]:
    """``num`` in-memory prompt rows: a coloured square on a plain image, a question about
    its colour, and the evidence columns of the square for the image's merged token grid
    (``evidence_mask``: the share of each token cell the square covers; ``region_labels``: 1
    on covered cells; ``evidence_target``: :func:`visgrpo.credit.smoothed_evidence_target`).

    Built without ``datasets`` (absent on the GPU machine); the images are exactly
    ``image_side(size)`` pixels, so the processor does not resize them.
    """
    from PIL import Image, ImageDraw

    from visgrpo.data.evidence import smoothed_evidence_target

    gen = torch.Generator().manual_seed(seed)
    side, g = image_side(size), image_side(size) // TOKEN_PIXELS
    rows = []
    for k in range(num):
        colour = list(COLOURS)[k % len(COLOURS)]
        w = int(torch.randint(side // 6, side // 3, (1,), generator=gen))
        x0, y0 = (int(v) for v in torch.randint(0, side - w, (2,), generator=gen))
        img = Image.new("RGB", (side, side), (236, 236, 230))
        ImageDraw.Draw(img).rectangle([x0, y0, x0 + w - 1, y0 + w - 1], fill=COLOURS[colour])
        box = torch.tensor([[x0, y0, x0 + w, y0 + w]], dtype=torch.float64) / TOKEN_PIXELS  # token units
        cover = _coverage(box[0, 1], box[0, 3], g)[:, None] * _coverage(box[0, 0], box[0, 2], g)[None]  # [g, g]
        rows.append({
            "id": f"gpu-check-{k}", "image": img, "question": "what colour is the square ?",
            "answer": colour, "answer_type": "exact",
            "evidence_mask": cover.flatten().tolist(),
            "region_labels": (cover.flatten() > 0).long().tolist(),
            "evidence_target": smoothed_evidence_target(box, (g, g)).tolist(),
        })
    return rows


def filler_words(n: int) -> list[str]:
    """``n`` distinct letter-only words (``xaaaa``, ``xaaab``, ...): one tokenizer piece each."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    for i in range(n):
        w = ""
        for _ in range(4):
            i, r = divmod(i, 26)
            w = letters[r] + w
        words.append("x" + w)
    return words


def build_model(work: Path, size: Size, device: str) -> Path:
    """Write the model directory (processor + random weights of ``size``)."""
    import transformers

    from visgrpo.models.tiny import build_tiny

    px = size.image_tokens * TOKEN_PIXELS * TOKEN_PIXELS
    corpus = [" ".join(COLOURS)]
    if size.text is not None:
        corpus.append(" ".join(filler_words(size.text["vocab_size"] - 1024)))
    out = build_tiny(FAMILY, work / "model", corpus=corpus, min_pixels=px, max_pixels=px)
    if size.text is None:
        return out
    base = transformers.AutoConfig.from_pretrained(out).to_dict()
    base["text_config"].pop("layer_types", None)  # derived from the layer count
    base["text_config"].update(size.text, tie_word_embeddings=size.tie_embeddings)
    base["vision_config"].update(size.vision, out_hidden_size=size.text["hidden_size"])
    base["tie_word_embeddings"] = size.tie_embeddings
    config = transformers.Qwen2_5_VLConfig.from_dict(base)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    for f in out.glob("model*.safetensors*"):
        f.unlink()
    model.save_pretrained(out)
    del model
    return out


def probe_inputs(processor, size: Size, micro_batch: int = 1, seed: int = 0):
    """Teacher-forcing inputs of ``micro_batch`` copies of one image prompt + a random response.

    Returns ``(inputs, P, T, image_positions [N])`` with ``inputs`` a dict of CPU tensors
    (``input_ids`` [b, P+T]); response row t is predicted at position ``P + t - 1``.
    """
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    side = image_side(size)
    pixels = torch.randint(0, 256, (side, side, 3), generator=gen, dtype=torch.uint8).numpy()
    image = Image.fromarray(pixels)
    messages = [{"role": "user",
                 "content": [{"type": "image"}, {"type": "text", "text": "what colour is the circle ?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    enc = processor(text=[text], images=[image], return_tensors="pt")
    P, T = enc["input_ids"].shape[1], size.probe_response
    vocab = len(processor.tokenizer)
    special = set(processor.tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(vocab) if i not in special])
    resp = allowed[torch.randint(0, len(allowed), (1, T), generator=gen)]
    ids = torch.cat([enc["input_ids"], resp], 1)  # [1, P+T]
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
    if "mm_token_type_ids" in enc:
        inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(resp)], 1)
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    cols = (ids[0] == image_id).nonzero()[:, 0]  # [N]
    if micro_batch > 1:
        inputs = {k: (v.repeat(micro_batch, *([1] * (v.dim() - 1)))) for k, v in inputs.items()}
    return inputs, P, T, cols
