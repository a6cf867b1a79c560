"""Batch types passed between the DataModule, the rollout engines and the RLVR module.

``PromptBatch``: what the DataModule yields (prompts with their images, no tensors).
``RolloutBatch``: G sampled responses per prompt laid out for ONE teacher-forced forward:
``input_ids = [left-padded prompt (P) | right-padded response (T)]``, so the logits "of
response token t" are at row ``P + t - 1`` for every response (CONTRACT.md).
Call the policy with ``model(**batch.model_inputs())``: transformers >= 5 needs
``mm_token_type_ids`` to compute the multimodal RoPE positions of the image tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from visgrpo.data.images import DEFAULT_MAX_PIXELS
from visgrpo.rollout.prompts import IMAGE_COLUMNS, build_messages, prompt_text, row_images
from visgrpo.rollout.vision import Geometry

EVIDENCE_FIELDS = ("evidence_mask", "evidence_target", "region_labels")


@dataclass
class PromptBatch:
    """Prompts of one step.

    Attributes:
        samples: dataset rows without decoded images, plus ``family``, ``resized_hw``
            (list of ``(h, w)`` per image) and ``grid_thw`` (list of ``[t, h, w]`` per image).
        images: per prompt, its RGB PIL images in prompt order.
        prompts: chat-template text ending with the generation prompt.
        messages: the chat messages the prompt text was rendered from.
    """

    samples: list[dict]
    images: list[list[Any]]
    prompts: list[str]
    messages: list[list[dict]]

    def __len__(self) -> int:
        return len(self.prompts)

    def to(self, device) -> PromptBatch:
        """No tensors inside: returned unchanged (Lightning's batch transfer hook)."""
        return self

    def select(self, idx: list[int]) -> PromptBatch:
        """The prompts at ``idx``."""
        return PromptBatch(
            [self.samples[i] for i in idx],
            [self.images[i] for i in idx],
            [self.prompts[i] for i in idx],
            [self.messages[i] for i in idx],
        )

    @classmethod
    def concat(cls, batches: list[PromptBatch]) -> PromptBatch:
        """Prompts of all ``batches`` in order."""
        return cls(
            *(sum((getattr(b, f.name) for b in batches), []) for f in dataclasses.fields(cls))
        )


class PromptCollator:
    """Collate dataset rows into a :class:`PromptBatch` (picklable for DataLoader workers).

    Args:
        processor: the model's processor (chat template).
        geometry: its :class:`~visgrpo.rollout.vision.Geometry`.
        prompt_template: ``str.format`` template with ``{question}``.
        system_prompt: system turn; ``None`` keeps the chat template's default.
        max_image_pixels: refuse images with more pixels (read from the header, before
            decoding); ``None``: no limit.
    """

    def __init__(
        self,
        processor,
        geometry: Geometry,
        prompt_template: str,
        system_prompt: str | None,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        self.max_image_pixels = max_image_pixels
        self.processor = processor
        self.geometry = geometry
        self.prompt_template = prompt_template
        self.system_prompt = system_prompt

    def sample_of(self, row: dict, images: list) -> dict:
        """The row without image columns, with family, resized_hw and grid_thw added."""
        sample = {k: v for k, v in row.items() if k not in IMAGE_COLUMNS}
        sizes = [(im.height, im.width) for im in images]
        grids = [self.geometry.grid_thw(h, w) for h, w in sizes]
        given = row.get("grid_thw")
        if given is not None and [list(map(int, g)) for g in given] != grids:
            raise ValueError(
                f"record {row.get('id')!r}: dataset grid_thw {given} differs from the processor's "
                f"{grids}; rebuild its masks for this processor"
            )
        sample["family"] = self.geometry.family
        sample["resized_hw"] = [self.geometry.resized_hw(h, w) for h, w in sizes]
        sample["grid_thw"] = grids
        return sample

    def __call__(self, rows: list[dict]) -> PromptBatch:
        samples, images, prompts, messages = [], [], [], []
        for row in rows:
            imgs = row_images(row, self.max_image_pixels)
            msgs = build_messages(row, len(imgs), self.prompt_template, self.system_prompt)
            samples.append(self.sample_of(row, imgs))
            images.append(imgs)
            messages.append(msgs)
            prompts.append(prompt_text(self.processor, msgs))
        return PromptBatch(samples, images, prompts, messages)


def _pad_to(x: torch.Tensor, length: int, value, left: bool) -> torch.Tensor:
    """Pad dim 1 of ``x`` [B, L, ...] to ``length``."""
    extra = length - x.shape[1]
    if extra <= 0:
        return x
    pad = torch.full((x.shape[0], extra, *x.shape[2:]), value, dtype=x.dtype, device=x.device)
    return torch.cat([pad, x] if left else [x, pad], dim=1)


@dataclass
class RolloutBatch:
    """Responses laid out for teacher forcing (B responses, P prompt and T response columns).

    ``pixel_values`` rows and ``image_grid_thw`` rows are repeated per response, so the
    vision features line up with the image-pad tokens of each row of ``input_ids``;
    ``pixel_counts`` / ``image_counts`` [B] say how many belong to each response.
    """

    input_ids: torch.Tensor  # [B, P+T] long
    attention_mask: torch.Tensor  # [B, P+T] long
    prompt_length: int  # P
    response_ids: torch.Tensor  # [B, T] long (pad after the response)
    response_mask: torch.Tensor  # [B, T] bool
    group_ids: torch.Tensor  # [B] long
    completions: list[str]
    samples: list[dict]
    truncated: torch.Tensor  # [B] bool: no EOS within max_new_tokens
    rejected: torch.Tensor  # [B] bool: rejected for generating vision tokens (mask all False)
    vision_tokens: torch.Tensor  # [B] long: vision tokens generated (removed or rejected)
    pad_token_id: int
    pixel_values: torch.Tensor | None = None  # [R, D]
    image_grid_thw: torch.Tensor | None = None  # [n_images_total, 3] long
    pixel_counts: torch.Tensor | None = None  # [B] long
    image_counts: torch.Tensor | None = None  # [B] long
    mm_token_type_ids: torch.Tensor | None = None  # [B, P+T] long (1 at image tokens)
    image_mask: torch.Tensor | None = None  # [B, N] bool
    evidence_mask: torch.Tensor | None = None  # [B, N] float
    evidence_target: torch.Tensor | None = None  # [B, N] float
    region_labels: torch.Tensor | None = None  # [B, N] long
    generation_logits: torch.Tensor | None = None  # [B, T, V] (debugging / tests only)
    metrics: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def __len__(self) -> int:
        return self.batch_size

    @property
    def response_length(self) -> int:
        """T."""
        return int(self.response_ids.shape[1])

    @property
    def response_lengths(self) -> torch.Tensor:
        """[B] long: number of real response tokens (EOS included)."""
        return self.response_mask.sum(-1)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the policy's teacher-forced forward."""
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        for name in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    # ---------------------------------------------------------- manipulation
    def to(self, device) -> RolloutBatch:
        """A copy with every tensor on ``device``."""
        changes = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **changes)

    def _row_index(self, counts: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
        """Indices of the rows (pixel rows or grid rows) belonging to responses ``idx``."""
        if counts is None:
            return None
        counts = counts.cpu()
        starts = torch.cumsum(counts, 0) - counts  # [B]
        parts = [torch.arange(int(starts[i]), int(starts[i] + counts[i])) for i in idx.tolist()]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def select(self, idx) -> RolloutBatch:
        """Responses ``idx`` (bool mask [B] or indices), with their pixel and grid rows.

        ``group_ids`` are kept (not renumbered), ``prompt_length`` and T are unchanged.
        """
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            if idx.shape != (self.batch_size,):
                raise ValueError(
                    f"bool index of shape {tuple(idx.shape)} for a batch of {self.batch_size}"
                )
            idx = idx.nonzero().flatten()
        idx = idx.long().cpu()
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "pixel_values" and value is not None:
                rows = self._row_index(self.pixel_counts, idx).to(value.device)
                changes[f.name] = value.index_select(0, rows)
            elif f.name == "image_grid_thw" and value is not None:
                rows = self._row_index(self.image_counts, idx).to(value.device)
                changes[f.name] = value.index_select(0, rows)
            elif isinstance(value, torch.Tensor):
                changes[f.name] = value.index_select(0, idx.to(value.device))
            elif f.name in ("completions", "samples"):
                changes[f.name] = [value[i] for i in idx.tolist()]
        return dataclasses.replace(self, **changes)

    def _repadded(self, P: int, T: int, N: int | None) -> dict[str, Any]:
        """Tensor fields padded to prompt length P, response length T and N image slots."""
        p_old = self.prompt_length
        prompt, resp = self.input_ids[:, :p_old], self.input_ids[:, p_old:]
        out = {
            "input_ids": torch.cat(
                [
                    _pad_to(prompt, P, self.pad_token_id, True),
                    _pad_to(resp, T, self.pad_token_id, False),
                ],
                1,
            ),
            "response_ids": _pad_to(self.response_ids, T, self.pad_token_id, False),
            "response_mask": _pad_to(self.response_mask, T, False, False),
        }
        for name in ("attention_mask", "mm_token_type_ids"):
            value = getattr(self, name)
            if value is not None:
                out[name] = torch.cat(
                    [_pad_to(value[:, :p_old], P, 0, True), _pad_to(value[:, p_old:], T, 0, False)],
                    1,
                )
        if self.generation_logits is not None:
            out["generation_logits"] = _pad_to(self.generation_logits, T, 0.0, False)
        if N is not None:
            for name, fill in (
                ("image_mask", False),
                ("evidence_mask", 0.0),
                ("evidence_target", 0.0),
                ("region_labels", 0),
            ):
                value = getattr(self, name)
                if value is not None:
                    out[name] = _pad_to(value, N, fill, False)
        return out

    @classmethod
    def concat(cls, batches: list[RolloutBatch]) -> RolloutBatch:
        """Stack batches (re-padding P, T and N); group ids are offset to stay distinct."""
        if not batches:
            raise ValueError("RolloutBatch.concat of an empty list")
        if len(batches) == 1:
            return batches[0]
        P = max(b.prompt_length for b in batches)
        T = max(b.response_length for b in batches)
        has_n = [b.image_mask is not None for b in batches]
        N = max(b.image_mask.shape[1] for b in batches) if all(has_n) else None
        padded = [b._repadded(P, T, N) for b in batches]
        offset, groups = 0, []
        for b in batches:
            groups.append(b.group_ids + offset)
            offset += int(b.group_ids.max()) + 1 if b.batch_size else 0
        fields: dict[str, Any] = {
            "prompt_length": P,
            "group_ids": torch.cat(groups),
            "completions": sum((b.completions for b in batches), []),
            "samples": sum((b.samples for b in batches), []),
            "pad_token_id": batches[0].pad_token_id,
            "metrics": {},
        }
        for f in dataclasses.fields(cls):
            if f.name in fields:
                continue
            values = [
                p.get(f.name, getattr(b, f.name)) for p, b in zip(padded, batches, strict=True)
            ]
            if all(v is None for v in values):
                fields[f.name] = None
            elif any(v is None for v in values):
                raise ValueError(f"RolloutBatch.concat: field {f.name} is set in some batches only")
            else:
                fields[f.name] = torch.cat(values, 0)
        return cls(**fields)
