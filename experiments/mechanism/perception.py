"""Perception pretraining of the relational testbed's vision tower: per-token object labels.

Every released Qwen-VL starts RL from a vision encoder that already sees objects and where
they are; the tiny random-weight model does not, and SFT on the reasoning chains alone never
taught it to (held-out accuracy stayed at chance after 800 steps at three model sizes: the
chains' form is learned, the image is not). This stage stands in for the encoder's
pretraining. The vision tower (patch embedding, blocks and merger, i.e. exactly the merged
tokens the language model reads) is trained with four linear heads on each merged token:

* the colour and the shape of the object covering the token (or "background"),
* the token's row and column on the merged grid (a ViT's absolute position embedding
  gives it that; Qwen2.5-VL's tower has only relative 2-D rotary, so it must be learned).

Labels come from the ``scene`` column (every object's box): a token belongs to the object
whose box covers most of it, when that covers at least :data:`MIN_COVER` of the token.
Only the vision tower changes; the language model, its embeddings and the heads' outputs
never meet the question, the answer or the chain, which the SFT stage then teaches.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_tools.drawing import COLOURS, SHAPES
from data_tools.grid import box_cell_coverage
from visgrpo.data.images import decode_value

MIN_COVER = 0.3
COLOUR_NAMES = tuple(COLOURS)


@dataclass(frozen=True)
class TokenLabels:
    """Per-merged-token labels of one image (row-major over the ``th x tw`` merged grid)."""

    colour: np.ndarray  # [th*tw] int, len(COLOURS) = background
    shape: np.ndarray  # [th*tw] int, len(SHAPES) = background
    th: int
    tw: int


def token_labels(scene: list[dict], width: int, height: int, th: int, tw: int) -> TokenLabels:
    """Colour and shape of the object covering each merged token of a ``th x tw`` grid.

    Args:
        scene: objects ``{"shape", "colour", "box": [x0, y0, x1, y1]}`` in image pixels.
        width: image width in pixels (the boxes' frame).
        height: image height in pixels.
        th: merged-token rows.
        tw: merged-token columns.
    """
    colour = np.full(th * tw, len(COLOURS), dtype=np.int64)
    shape = np.full(th * tw, len(SHAPES), dtype=np.int64)
    if scene:
        boxes = np.array([o["box"] for o in scene], dtype=np.float64)  # [K, 4] pixels
        boxes = boxes * np.array([tw / width, th / height, tw / width, th / height])  # token units
        cover = box_cell_coverage(boxes[None], th, tw)[0].reshape(len(scene), -1)  # [K, th*tw]
        best = cover.argmax(0)  # [th*tw]
        hit = cover.max(0) >= MIN_COVER
        colour[hit] = [COLOUR_NAMES.index(scene[k]["colour"]) for k in best[hit]]
        shape[hit] = [SHAPES.index(scene[k]["shape"]) for k in best[hit]]
    return TokenLabels(colour, shape, th, tw)


class PerceptionHeads(torch.nn.Module):
    """Linear colour / shape / row / column read-outs of the merged visual tokens."""

    def __init__(self, hidden: int, th: int, tw: int):
        super().__init__()
        self.colour = torch.nn.Linear(hidden, len(COLOURS) + 1)
        self.shape = torch.nn.Linear(hidden, len(SHAPES) + 1)
        self.row = torch.nn.Linear(hidden, th)
        self.col = torch.nn.Linear(hidden, tw)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """``tokens`` ``[N, hidden]`` -> logits per head, each ``[N, classes]``."""
        return {"colour": self.colour(tokens), "shape": self.shape(tokens), "row": self.row(tokens),
                "col": self.col(tokens)}


class _Split:
    """Pixel values and labels of a dataset split, processed once by the model's own processor."""

    def __init__(self, path: Path, image_processor, merge: int):
        from visgrpo.data.io import load_dataset_dir

        ds, _ = load_dataset_dir(path)
        images = [decode_value(v) for v in ds["image"]]  # the training decode (EXIF, RGB8)
        enc = image_processor(images=images, return_tensors="pt")
        self.pixels, self.grid = enc["pixel_values"], enc["image_grid_thw"]  # [sum patches, D], [n, 3]
        self.start = torch.cat([torch.zeros(1, dtype=torch.long), self.grid.prod(-1).cumsum(0)])  # [n + 1]
        labels = []
        for k, (scene, img) in enumerate(zip(ds["scene"], images, strict=True)):
            th, tw = int(self.grid[k, 1]) // merge, int(self.grid[k, 2]) // merge
            lab = token_labels(json.loads(scene), img.width, img.height, th, tw)  # synth's JSON string
            rows, cols = np.divmod(np.arange(th * tw), tw)
            labels.append(np.stack([lab.colour, lab.shape, rows, cols], 1))  # [th*tw, 4]
        self.labels = [torch.from_numpy(x) for x in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pix = torch.cat([self.pixels[self.start[i]:self.start[i + 1]] for i in idx])
        return pix, self.grid[idx], torch.cat([self.labels[i] for i in idx])  # labels [N, 4]


HEADS = ("colour", "shape", "row", "col")


def _losses(model, heads, pix, grid, labels) -> tuple[torch.Tensor, dict[str, float]]:
    tokens = model.model.visual(pix, grid_thw=grid).pooler_output  # [N, hidden]
    logits = heads(tokens)
    loss, acc = 0.0, {}
    obj = labels[:, 0] < len(COLOURS)  # tokens on an object
    for j, name in enumerate(HEADS):
        loss = loss + torch.nn.functional.cross_entropy(logits[name], labels[:, j])
        right = logits[name].argmax(-1) == labels[:, j]
        acc[name] = float(right[obj].float().mean()) if name in ("colour", "shape") else float(right.float().mean())
    acc["background"] = float((logits["colour"].argmax(-1) == labels[:, 0])[~obj].float().mean())
    return loss, acc


def pretrain_vision(model_dir: Path, train: Path, val: Path, out: Path, *, steps: int = 1500,
                    batch: int = 32, lr: float = 2e-3, seed: int = 0, log=print) -> dict[str, float]:
    """Train the vision tower of the model in ``model_dir`` on per-token labels; write the
    whole model (language side unchanged) and its processor to ``out``.

    Returns:
        Held-out per-token accuracy of each head (colour and shape on object tokens,
        ``background`` on the others), also written to ``perception.json`` in ``out``.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from visgrpo.data.io import atomic_output_dir

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    merge = model.config.vision_config.spatial_merge_size
    tr, va = _Split(train, processor.image_processor, merge), _Split(val, processor.image_processor, merge)
    th, tw = int(tr.grid[0, 1]) // merge, int(tr.grid[0, 2]) // merge
    heads = PerceptionHeads(model.config.text_config.hidden_size, th, tw)
    params = list(model.model.visual.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        idx = rng.choice(len(tr), size=min(batch, len(tr)), replace=False).tolist()
        loss, acc = _losses(model, heads, *tr.batch(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"perception step {step}: loss {loss.item():.3f} " + " ".join(f"{k} {v:.2f}" for k, v in acc.items()))
    model.eval()
    with torch.no_grad():
        totals = {k: [] for k in (*HEADS, "background")}
        for s in range(0, len(va), 64):
            _, acc = _losses(model, heads, *va.batch(list(range(s, min(s + 64, len(va))))))
            for k, v in acc.items():
                totals[k].append(v)
    result = {k: float(np.mean(v)) for k, v in totals.items()}
    log("perception held-out: " + " ".join(f"{k} {v:.3f}" for k, v in result.items()))
    with atomic_output_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "perception.json").write_text(json.dumps({"steps": steps, "held_out": result}, indent=1))
    return result
