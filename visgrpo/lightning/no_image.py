"""Validation with the image blanked: does the policy's accuracy need the image?

A policy that answers from the question text alone (a language prior) scores the same with
the image replaced by a flat grey one; a policy that reads the image drops to the text-only
level, which on a task with balanced answers is chance. Issue 22 makes this the fourth part
of the learning precondition: an accuracy gain counts only where ``val/accuracy_no_image``
stays near chance before and after RL.
"""

from __future__ import annotations

import lightning as L
import torch
from PIL import Image

from visgrpo.data.batch import PromptBatch

GREY = (128, 128, 128)


def blank_images(batch: PromptBatch, fill: tuple[int, int, int] = GREY) -> PromptBatch:
    """``batch`` with every image replaced by a flat ``fill`` image of the same size and mode.

    The size is kept, so the prompt text (its image placeholder tokens), ``resized_hw`` and
    ``grid_thw`` stay valid; only the pixels carry no information.
    """
    images = [[Image.new(im.mode, im.size, fill if im.mode == "RGB" else fill[0]) for im in per_prompt]
              for per_prompt in batch.images]
    return PromptBatch(batch.samples, images, batch.prompts, batch.messages)


class NoImageValidation(L.Callback):
    """Logs ``val/accuracy_no_image``: the greedy accuracy of the same policy on the same
    validation prompts with every image blanked (:func:`blank_images`).

    One more greedy generation per validation batch; the reward head's ``accuracy``
    component scores it (nothing is logged when the head has none).

    Args:
        fill: RGB colour of the blank images.
    """

    def __init__(self, fill: tuple[int, int, int] = GREY) -> None:
        self.fill = tuple(int(c) for c in fill)

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        blank = blank_images(batch, self.fill)
        was_training = pl_module.policy.training
        rollout = pl_module.engine.generate(pl_module.policy, pl_module.processor, blank, pl_module.greedy(), seed=0)
        pl_module.policy.train(was_training)
        acc = pl_module.reward_head(rollout.completions, rollout.samples).components.get("accuracy")
        if acc is None:
            return
        pl_module.log("val/accuracy_no_image", acc.float().mean(), on_epoch=True, on_step=False,
                      batch_size=len(rollout.completions), sync_dist=True)
