"""Shared by every engine: encode prompts, clean raw responses, lay out a RolloutBatch.

Response cleaning (:func:`clean_response`), applied to each raw list of generated ids:

1. the response ends at its first EOS id (kept: the policy learns to stop) or right after
   the first stop string, whichever comes first; without either it is ``truncated``;
2. vision tokens (``<|image_pad|>``, ``<|video_pad|>``, ``<|vision_start|>`` ...) must never
   reach the training forward, where the model would scatter image features into them.
   ``on_vision_token="mask"`` removes them from the response (the rest is kept; their
   count is reported), ``"reject"`` keeps only the clean prefix and marks the whole
   response ``rejected`` (``response_mask`` all False; drop it with ``select(~rejected)``
   or score it as a failure).
"""

from __future__ import annotations

import torch

from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.data.fields import EVIDENCE_FIELDS


def encode_prompts(processor, prompts: PromptBatch) -> dict[str, torch.Tensor]:
    """Processor output for the prompts, LEFT-padded (input_ids, attention_mask, pixel_values,
    image_grid_thw, mm_token_type_ids).
    """
    images = [im for imgs in prompts.images for im in imgs]
    tok = processor.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = processor(
            text=list(prompts.prompts), images=images or None, return_tensors="pt", padding=True
        )
    finally:
        tok.padding_side = side
    return dict(enc)


def clean_response(
    ids: list[int],
    eos_ids: set[int],
    vision_ids: set[int],
    on_vision_token: str = "mask",
    stop_strings: list[str] | None = None,
    decode=None,
) -> tuple[list[int], bool, bool, int]:
    """Cut a raw response at EOS / stop string and handle vision tokens.

    Args:
        ids: generated ids (may continue with padding after the end).
        eos_ids: ids that end a response.
        vision_ids: ids that must not stay in a response.
        on_vision_token: ``"mask"`` (remove them) or ``"reject"``.
        stop_strings: strings that end a response (kept in it).
        decode: ``list[int] -> str`` keeping special tokens (needed with ``stop_strings``).

    Returns:
        ``(kept_ids, truncated, rejected, n_vision_tokens)``.
    """
    if on_vision_token not in ("mask", "reject"):
        raise ValueError(f"on_vision_token must be 'mask' or 'reject', got {on_vision_token!r}")
    end = next((i + 1 for i, t in enumerate(ids) if t in eos_ids), None)
    if stop_strings:
        upto = ids[: end or len(ids)]
        if any(s in decode(upto) for s in stop_strings):
            stop = next(
                k
                for k in range(1, len(upto) + 1)
                if any(s in decode(upto[:k]) for s in stop_strings)
            )
            end = stop if end is None else min(end, stop)
    truncated = end is None
    kept = list(ids if end is None else ids[:end])
    n_vision = sum(1 for t in kept if t in vision_ids)
    rejected = False
    if n_vision:
        if on_vision_token == "mask":
            kept = [t for t in kept if t not in vision_ids]
        else:
            rejected = True
            kept = kept[: next(i for i, t in enumerate(kept) if t in vision_ids)]
    return kept, truncated, rejected, n_vision


def _evidence(samples: list[dict], n_tokens: list[int], N: int):
    """``image_mask`` and (when the samples have them) padded evidence tensors, [B, N]."""
    B = len(samples)
    image_mask = torch.zeros(B, N, dtype=torch.bool)
    for b, n in enumerate(n_tokens):
        image_mask[b, :n] = True
    present = [all(s.get(f) is not None for f in EVIDENCE_FIELDS) for s in samples]
    if not any(present):
        return image_mask, None, None, None
    dtypes = (torch.get_default_dtype(), torch.get_default_dtype(), torch.long)  # mask, target, labels
    out = {name: torch.zeros(B, N, dtype=dt) for name, dt in zip(EVIDENCE_FIELDS, dtypes, strict=True)}
    for b, s in enumerate(samples):
        for name, tensor in out.items():
            values = s.get(name)
            if values is None or len(values) != n_tokens[b]:
                got = "missing" if values is None else f"{len(values)} values"
                raise ValueError(
                    f"record {s.get('id')!r}: {name} is {got} but the prompt has {n_tokens[b]} image tokens"
                )
            tensor[b, : n_tokens[b]] = torch.as_tensor(values, dtype=tensor.dtype)
    return image_mask, *(out[name] for name in EVIDENCE_FIELDS)


def assemble_rollout(
    processor,
    prompts: PromptBatch,
    enc: dict[str, torch.Tensor],
    responses: list[list[int]],
    num_generations: int,
    eos_ids: list[int],
    vision_ids: list[int],
    on_vision_token: str = "mask",
    stop_strings: list[str] | None = None,
    device: torch.device | str = "cpu",
    generation_logits: torch.Tensor | None = None,
) -> RolloutBatch:
    """Lay out G raw responses per prompt (prompt i -> responses i*G .. i*G+G-1).

    Args:
        enc: :func:`encode_prompts` output for ``prompts`` (left padded).
        responses: ``len(prompts) * G`` raw generated id lists.
        generation_logits: optional [B, T_gen, V] raw logits of the generation steps.
    """
    tok = processor.tokenizer
    n, G = len(prompts), num_generations
    B = n * G
    if len(responses) != B:
        raise ValueError(f"got {len(responses)} responses for {n} prompts x {G} generations")
    eos, vis = set(eos_ids), set(vision_ids)

    def decode_keep(x):
        return tok.decode(x, skip_special_tokens=False)

    cleaned = [
        clean_response(r, eos, vis, on_vision_token, stop_strings, decode_keep) for r in responses
    ]
    lengths = [len(c[0]) for c in cleaned]
    T = max(1, max(lengths))
    pad = tok.pad_token_id
    response_ids = torch.full((B, T), pad, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, (kept, *_rest) in enumerate(cleaned):
        response_ids[b, : len(kept)] = torch.as_tensor(kept, dtype=torch.long)
        valid[b, : len(kept)] = True
    truncated = torch.tensor([c[1] for c in cleaned], dtype=torch.bool)
    rejected = torch.tensor([c[2] for c in cleaned], dtype=torch.bool)
    response_mask = valid & ~rejected[:, None]  # [B, T]

    prompt_ids = enc["input_ids"].repeat_interleave(G, 0)  # [B, P]
    P = prompt_ids.shape[1]
    input_ids = torch.cat([prompt_ids, response_ids], 1)  # [B, P+T]
    attention_mask = torch.cat([enc["attention_mask"].repeat_interleave(G, 0), valid.long()], 1)
    mm = enc.get("mm_token_type_ids")
    if mm is not None:
        mm = torch.cat([mm.repeat_interleave(G, 0), torch.zeros(B, T, dtype=mm.dtype)], 1)

    merge = processor.image_processor.merge_size
    grids = enc.get("image_grid_thw")
    per_prompt_images = [len(imgs) for imgs in prompts.images]
    pixel_values = image_grid_thw = pixel_counts = image_counts = None
    n_tokens = [0] * n
    if grids is not None:
        rows = grids.prod(-1)  # [n_images] patches per image
        img_split = torch.split(torch.arange(grids.shape[0]), per_prompt_images)
        pv_split = torch.split(enc["pixel_values"], [int(rows[i].sum()) for i in img_split])
        pixel_values = torch.cat([pv_split[i] for i in range(n) for _ in range(G)])  # [R, D]
        image_grid_thw = torch.cat([grids[img_split[i]] for i in range(n) for _ in range(G)])
        pixel_counts = torch.tensor(
            [int(rows[img_split[i]].sum()) for i in range(n)]
        ).repeat_interleave(G)
        image_counts = torch.tensor(per_prompt_images).repeat_interleave(G)
        n_tokens = [int(rows[img_split[i]].sum()) // merge**2 for i in range(n)]
        image_pad = processor.image_token_id
        for i in range(n):
            found = int((enc["input_ids"][i] == image_pad).sum())
            if found != n_tokens[i]:
                raise ValueError(
                    f"record {prompts.samples[i].get('id')!r}: {found} image tokens in the prompt, "
                    f"{n_tokens[i]} from its grids"
                )
    samples = [
        dict(s, response_length=lengths[i * G + g])
        for i, s in enumerate(prompts.samples)
        for g in range(G)
    ]
    tokens_per_response = [n_tokens[i] for i in range(n) for _ in range(G)]
    image_mask, ev_mask, ev_target, labels = _evidence(
        samples, tokens_per_response, max(1, max(tokens_per_response, default=1))
    )
    completions = [tok.decode(c[0], skip_special_tokens=True) for c in cleaned]
    if generation_logits is not None:
        generation_logits = generation_logits[:, :T]
    lengths_t = torch.tensor(lengths, dtype=torch.float)
    metrics = {
        "rollout/response_length_mean": float(lengths_t.mean()),
        "rollout/response_length_max": float(lengths_t.max()),
        "rollout/truncated_frac": float(truncated.float().mean()),
        "rollout/vision_tokens": float(sum(c[3] for c in cleaned)),
        "rollout/rejected": float(rejected.sum()),
    }
    batch = RolloutBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prompt_length=P,
        response_ids=response_ids,
        response_mask=response_mask,
        group_ids=torch.arange(n).repeat_interleave(G),
        completions=completions,
        samples=samples,
        truncated=truncated,
        rejected=rejected,
        vision_tokens=torch.tensor([c[3] for c in cleaned], dtype=torch.long),
        pad_token_id=pad,
        pixel_values=pixel_values,
        image_grid_thw=image_grid_thw,
        pixel_counts=pixel_counts,
        image_counts=image_counts,
        mm_token_type_ids=mm,
        image_mask=image_mask,
        evidence_mask=ev_mask,
        evidence_target=ev_target,
        region_labels=labels,
        generation_logits=generation_logits,
        metrics=metrics,
    )
    return batch.to(device)
