"""Collation of dataset rows into a :class:`~visgrpo.data.batch.PromptBatch`.

The collator renders each row's chat prompt with :mod:`visgrpo.rollout.prompts` and checks
its token grid against the model's :class:`~visgrpo.data.geometry.Geometry`; the batch types
themselves are :mod:`visgrpo.data.batch`.
"""

from __future__ import annotations

from visgrpo.data.batch import PromptBatch
from visgrpo.data.geometry import Geometry
from visgrpo.data.images import DEFAULT_MAX_PIXELS
from visgrpo.rollout.prompts import IMAGE_COLUMNS, build_messages, prompt_text, row_images


class PromptCollator:
    """Collate dataset rows into a :class:`PromptBatch` (picklable for DataLoader workers).

    Args:
        processor: the model's processor (chat template).
        geometry: its :class:`~visgrpo.data.geometry.Geometry`.
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
