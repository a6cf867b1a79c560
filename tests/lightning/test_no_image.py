"""val/accuracy_no_image: the same policy validated with every image blanked (issue 22)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from visgrpo.data.batch import PromptBatch
from visgrpo.lightning.no_image import GREY, NoImageValidation, blank_images
from visgrpo.rewards import RewardHead, RewardSpec


def _batch(colours: list[tuple[int, int, int]], answers: list[str]) -> PromptBatch:
    images = [[Image.new("RGB", (30, 20), c)] for c in colours]
    samples = [{"id": str(i), "answer": a, "answer_type": "text"} for i, a in enumerate(answers)]
    return PromptBatch(samples, images, [f"p{i}" for i in range(len(answers))], [[] for _ in answers])


class ReadsThePixel:
    """A policy that names the colour of the image's top-left pixel (grey for anything else)."""

    names = {(255, 0, 0): "red", (0, 0, 255): "blue"}

    def generate(self, policy, processor, prompts, sampling, seed=None):
        words = [self.names.get(ims[0].getpixel((0, 0)), "grey") for ims in prompts.images]
        return SimpleNamespace(completions=[f"<think></think><answer>{w}</answer>" for w in words],
                               samples=prompts.samples)


def test_blank_images_keeps_sizes_and_text_and_removes_every_pixel():
    batch = _batch([(255, 0, 0), (0, 0, 255)], ["red", "blue"])
    blank = blank_images(batch)
    for before, after in zip(batch.images, blank.images, strict=True):
        assert after[0].size == before[0].size and after[0].mode == before[0].mode
        assert np.all(np.asarray(after[0]) == np.array(GREY, dtype=np.uint8))
    assert blank.prompts == batch.prompts and blank.samples is batch.samples
    assert np.asarray(batch.images[0][0])[0, 0].tolist() == [255, 0, 0]  # the input batch is untouched


def test_callback_logs_the_accuracy_of_the_blanked_generation():
    logged = {}
    policy = SimpleNamespace(training=True, train=lambda mode=True: None)
    module = SimpleNamespace(
        engine=ReadsThePixel(), policy=policy, processor=None, greedy=lambda: None,
        reward_head=RewardHead([RewardSpec("accuracy", 1.0)]),
        log=lambda key, value, **kw: logged.update({key: (float(value), kw["batch_size"])}),
    )
    # With the images this policy is always right; with blank images it answers "grey".
    batch = _batch([(255, 0, 0), (0, 0, 255), (255, 0, 0), (0, 0, 255)], ["red", "blue", "grey", "red"])
    NoImageValidation().on_validation_batch_end(None, module, None, batch, 0)
    assert logged["val/accuracy_no_image"] == (0.25, 4)  # only the item whose answer is "grey"
    NoImageValidation(fill=(255, 0, 0)).on_validation_batch_end(None, module, None, batch, 0)
    assert logged["val/accuracy_no_image"] == (0.5, 4)  # a red fill: the two "red" answers
