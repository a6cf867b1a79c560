"""The language-prior testbed (issue 22, item 5): a text cue that is right in training and wrong on held-out data.

Visual-credit papers say their methods keep the policy reading the image where the text
offers a shortcut. Here the shortcut is explicit: every question of the shapes task ends
with a colour in brackets, ``What colour is the star? (red)``. In the training split the
cue is the answer with probability :attr:`Cue.train_right` (else one of the five other
colours); in the held-out split it is always wrong (a uniformly drawn other colour), so the
held-out accuracy *is* the accuracy on cue-conflict items, and a policy that copies the cue
scores 0 there.

The warm start is the committed shapes warm start plus :attr:`Cue.sft_steps` SFT steps on
the cued training split (it learns to lean on the cue); RL then trains on the same cued
training prompts, rewarded against the true colours. ``python -m experiments.mechanism
--testbed prior`` runs the study's arms on it (:data:`experiments.mechanism.study.PRIOR_ARMS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools.drawing import COLOURS
from experiments.shapes import recipe
from experiments.shapes.stages import Workdir, sft_from_warmstart
from experiments.shapes.warmstart import stage0
from visgrpo.data.io import load_dataset_dir, save_dataset

WARMSTART = Path(__file__).resolve().parents[1] / "learning" / "warmstart_prior"  # committed there, with its results


@dataclass(frozen=True)
class Cue:
    """Settings of the language-prior testbed."""

    train_right: float = 0.9  # the cue is the answer in 90% of the training questions
    sft_steps: int = 60
    sft_lr: float = 1.0e-3
    seed: int = 0

    def data(self, work: Workdir) -> Path:
        return work.root / "artifacts" / f"shapes_cue{self.train_right:g}"


def add_cue(src: Path, dst: Path, right: float, seed: int) -> dict:
    """Write ``src`` to ``dst`` with `` (<colour>)`` after each question: the answer with
    probability ``right``, else a uniformly drawn other colour; adds the columns ``cue`` and
    ``cue_conflict``. Atomic (``save_dataset``). Returns counts.
    """
    ds, meta = load_dataset_dir(src)
    rng = np.random.default_rng(seed)
    colours = sorted(COLOURS)
    cues = []
    for answer in ds["answer"]:
        others = [c for c in colours if c != answer]
        cues.append(answer if rng.random() < right else others[int(rng.integers(len(others)))])
    conflict = [c != a for c, a in zip(cues, ds["answer"], strict=True)]
    questions = [f"{q} ({c})" for q, c in zip(ds["question"], cues, strict=True)]
    ds = ds.remove_columns("question").add_column("question", questions)
    ds = ds.add_column("cue", cues).add_column("cue_conflict", conflict)
    save_dataset(ds, dst, meta=meta, overwrite=True)
    return {"records": len(ds), "conflict": int(sum(conflict))}


def build(work: Workdir, tb: Cue = Cue(), out: Path = WARMSTART, log: Path | None = None) -> Path:
    """The cued splits (train: right ``train_right``; validation: always wrong) and the SFT
    warm start from the committed shapes warm start (skipped when ``out`` exists).
    """
    if not (work.data / "validation").exists():
        stage0(work, with_model=False)
    data = tb.data(work)
    counts = {}
    if not (data / "validation").exists():
        counts["train"] = add_cue(work.data / "train", data / "train", tb.train_right, tb.seed)
        counts["validation"] = add_cue(work.data / "validation", data / "validation", 0.0, tb.seed + 1)
    if (out / "config.json").exists():
        return out
    return sft_from_warmstart(work, recipe.SFT_CONFIG, "prior_sft", tb, data_overrides(work, tb), {"data": counts},
                              out, log)


def data_overrides(work: Workdir, tb: Cue = Cue()) -> list[str]:
    """CLI overrides pointing the shapes configs at the cued splits."""
    return [f"--data.train_path={tb.data(work) / 'train'}", f"--data.val_path={tb.data(work) / 'validation'}"]
