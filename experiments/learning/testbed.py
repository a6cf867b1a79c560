"""The learning testbed (issue 22): a short-answer task where DAPO has room to learn.

The shapes task (one colour question, a 6-token answer, 1/6 chance) with a warm start that
*sees* the object but is unsure how to *name* it: its SFT data names each object's colour or
the colour it is confusable with (red/orange, blue/purple, green/yellow), half of the time
each (:func:`confuse`). So the warm start learns perception from all the SFT data (either
name of a pair tells which pair the object belongs to) and answers the pair right but the
colour right only about half the time. RL, rewarded against the true colours, has a
learnable signal at every step: it must pick the right member of the pair from the image.
A text-only policy stays at chance (the colour of the named shape is uniform), so the gain
must come from the image (``val/accuracy_no_image``).

Why not the other warm starts (the recipes table in README.md): the shapes warm start
(0.41) sits near what this tiny model's perception reaches with SFT (0.42-0.45), and RL
must improve perception itself to move it (+0.026); a 150-step SFT warm start (0.22)
ignores the image (its no-image accuracy equals its accuracy) and RL did not find it
in 50 steps.

Everything is built under the working directory's ``artifacts/`` and ``runs/`` from the
shapes stage 0 data; the warm start is exported to :data:`WARMSTART` (committed, ~1 MB).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from experiments.shapes import recipe
from experiments.shapes.stages import Workdir, fit, write_json
from experiments.shapes.warmstart import stage0
from visgrpo.data.io import load_dataset_dir, save_dataset

WARMSTART = Path(__file__).resolve().parent / "warmstart"
CONFUSABLE = (("red", "orange"), ("blue", "purple"), ("green", "yellow"))
CHANCE = 1 / 6  # six colours, uniform over the named object


def partner(colour: str) -> str:
    """The colour ``colour`` is confused with (itself when it has no pair)."""
    for a, b in CONFUSABLE:
        if colour == a:
            return b
        if colour == b:
            return a
    return colour


@dataclass(frozen=True)
class Learning:
    """Settings of the learning testbed (the SFT data's confusion and the SFT budget)."""

    swap_share: float = 0.5  # share of SFT answers replaced by the pair partner
    seed: int = 0
    sft_steps: int = 300  # the shapes warm start's budget
    sft_lr: float = 1.0e-3

    def sft_data(self, work: Workdir) -> Path:
        return work.root / "artifacts" / f"shapes_confused{self.swap_share:g}"


def confuse(src: Path, dst: Path, share: float, seed: int) -> dict:
    """Write ``src`` (a dataset directory) to ``dst`` with a ``share`` of its answers replaced
    by their pair partner (:data:`CONFUSABLE`), drawn independently per record; returns
    counts. Atomic (``save_dataset``): ``dst`` is complete or absent."""
    ds, meta = load_dataset_dir(src)
    rng = np.random.default_rng(seed)
    swap = rng.random(len(ds)) < share  # [N]
    answers = [partner(a) if s else a for a, s in zip(ds["answer"], swap, strict=True)]
    changed = sum(a != b for a, b in zip(answers, ds["answer"], strict=True))
    ds = ds.remove_columns("answer").add_column("answer", answers)
    save_dataset(ds, dst, meta=meta, overwrite=True)
    return {"records": len(ds), "swapped": int(swap.sum()), "changed": int(changed)}


def build(work: Workdir, tb: Learning = Learning(), out: Path = WARMSTART, log: Path | None = None) -> Path:
    """Stage 0 of the shapes experiment (if absent), the confused SFT data, the SFT warm start
    (exported to ``out`` with ``warmstart.json``); every step is skipped when its output exists."""
    if (out / "config.json").exists():
        return out
    if not (work.data / "validation").exists():
        stage0(work)
    data = tb.sft_data(work)
    counts = confuse(work.data / "train", data / "train", tb.swap_share, tb.seed)
    if not (data / "validation").exists():
        shutil.copytree(work.data / "validation", data / "validation")  # validation answers stay true
    export = work.root / "runs" / "learning_sft" / "export"
    seconds = fit(work, [recipe.SFT_CONFIG], [
        f"--trainer.max_steps={tb.sft_steps}", "--trainer.val_check_interval=50",
        f"--model.init_args.learning_rate={tb.sft_lr}", f"--model.init_args.policy.name_or_path={work.model}",
        f"--data.train_path={data / 'train'}", f"--data.val_path={data / 'validation'}",
        f"--trainer.logger.init_args.tracking_uri={work.tracking_uri}",
        "--trainer.logger.init_args.experiment_name=learning_sft", "--trainer.default_root_dir=runs/learning_sft",
        "--trainer.callbacks+=visgrpo.lightning.callbacks.ExportModel", f"--trainer.callbacks.dirpath={export}",
    ], log=log)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(export, out)
    write_json(out / "warmstart.json", {"testbed": asdict(tb), "confusable": CONFUSABLE, "sft_data": counts,
                                        "data": asdict(recipe.DATA), "seconds": round(seconds, 1)})
    return out
