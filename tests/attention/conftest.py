"""Fixtures for the attention tests: tiny models (SDPA and eager) and a padded RL batch."""

from __future__ import annotations

import pytest
import torch


def _load(path: str, impl: str):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        path, attn_implementation=impl, dtype=torch.float32
    )
    return model.eval()


def make_rl_batch(path: str, T: int = 5, seed: int = 0) -> dict:
    """Two prompts (the first with two images, the second with one and a longer question),
    left-padded to P by the processor, followed by random responses right-padded to T
    (the second response has 2 padding tokens).
    """
    from PIL import Image
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(path)
    proc.tokenizer.padding_side = "left"
    msgs = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": "What colour ?"},
                    {"type": "image"},
                ],
            }
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": "What colour is the circle on the left ?"},
                ],
            }
        ],
    ]
    texts = [proc.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
    images = [
        Image.new("RGB", (60, 90), (255, 0, 0)),
        Image.new("RGB", (90, 60), (0, 255, 0)),
        Image.new("RGB", (70, 70), (0, 0, 255)),
    ]
    enc = proc(text=texts, images=images, return_tensors="pt", padding=True)
    g = torch.Generator().manual_seed(seed)
    words = proc.tokenizer.convert_tokens_to_ids(["red", "circle", "the", "A", "<answer>", "7"])
    resp = torch.tensor(words)[torch.randint(len(words), (2, T), generator=g)]  # [2, T]
    response_mask = torch.ones(2, T, dtype=torch.bool)
    response_mask[1, T - 2 :] = False
    resp = resp.masked_fill(~response_mask, proc.tokenizer.pad_token_id)
    P = enc["input_ids"].shape[1]
    batch = dict(enc)
    batch["input_ids"] = torch.cat([enc["input_ids"], resp], 1)
    batch["attention_mask"] = torch.cat([enc["attention_mask"], response_mask.long()], 1)
    batch["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(resp)], 1)
    batch["response_mask"] = response_mask
    batch["prompt_len"] = P
    return batch


def repeat_groups(batch: dict, order: list[int]) -> dict:
    """The two-prompt batch with each prompt repeated as in a rollout (row r is prompt ``order[r]``), the
    responses differing per row, and the vision rows repeated per row.
    """
    idx = torch.tensor(order)
    grid = batch["image_grid_thw"]
    per_image = (grid.prod(-1)).tolist()
    images_of = [[0, 1], [2]]  # prompt 0 has images 0 and 1; prompt 1 has image 2
    starts = [sum(per_image[:k]) for k in range(len(per_image))]
    pix, grids, pc, ic = [], [], [], []
    for p in order:
        rows = [torch.arange(starts[k], starts[k] + per_image[k]) for k in images_of[p]]
        pix.append(batch["pixel_values"][torch.cat(rows)])
        grids.append(grid[images_of[p]])
        pc.append(sum(per_image[k] for k in images_of[p]))
        ic.append(len(images_of[p]))
    out = {k: batch[k][idx] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "response_mask")}
    P = batch["prompt_len"]
    g = torch.Generator().manual_seed(1)
    resp = out["input_ids"][:, P:]
    shuffled = resp.gather(1, torch.argsort(torch.rand(resp.shape, generator=g), 1))
    out["input_ids"] = torch.cat([out["input_ids"][:, :P], torch.where(out["response_mask"], shuffled, resp)], 1)
    out.update(pixel_values=torch.cat(pix), image_grid_thw=torch.cat(grids), prompt_len=P,
               group_ids=torch.tensor(order), pixel_counts=torch.tensor(pc), image_counts=torch.tensor(ic))
    return out


@pytest.fixture(scope="session")
def grouped_batch():
    """The builder :func:`repeat_groups` (batch, order) -> dict."""
    return repeat_groups


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs):
    """Family -> (sdpa model, eager model, batch), built once per session."""
    cache: dict = {}

    class _Models(dict):
        def __missing__(self, family):
            path = tiny_model_dirs[family]
            self[family] = (_load(path, "sdpa"), _load(path, "eager"), make_rl_batch(path))
            return self[family]

    return _Models(cache)


@pytest.fixture(scope="session")
def rl_batch():
    """The batch builder :func:`make_rl_batch` (path, T=5, seed=0) -> dict."""
    return make_rl_batch
