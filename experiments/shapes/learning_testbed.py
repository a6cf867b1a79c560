"""The learning testbed (issue 22): a short-answer task where DAPO has room to learn.

The shapes task (one colour question, a 6-token answer, 1/6 chance, the shapes data) from a
warm start with a strong answer prior: the committed shapes warm start (0.41 held-out
greedy accuracy) fine-tuned for :attr:`Learning.sft_steps` more SFT steps on the training
split with a share :attr:`Learning.share` of the answers replaced by one colour,
:attr:`Learning.colour` (:func:`skew`). It keeps what it perceives and over-says that
colour, so its greedy answers fall towards the prior while its perception still holds
the right answer in its samples. RL, rewarded against the true colours (uniform over the
six), has a learnable signal at every step: say the colour the image shows, not the prior.
A text-only policy stays at chance (the colour of the named shape is uniform; the prior
colour is right 1/6 of the time), so a gain has to come from the image
(``val/accuracy_no_image``).

A stand-in, stated plainly: the room to learn is a prior put in on purpose, the situation
the papers describe (a pretrained model's answer priors over what the image shows), at a
scale where RL can remove it in a CPU budget. It shows the RL loops raise held-out accuracy
and gives the credit methods a baseline that learns; it does not show that a method
improves perception.

Why not the other warm starts (the recipes table in README.md): the shapes warm start
(0.41) sits at what this tiny model's perception reaches with SFT (0.42-0.45), so RL must
improve perception itself to move it (+0.026 in the shapes study); a 150-step SFT warm
start (0.22) ignores the image (no-image accuracy equals its accuracy, 0.18); blurring the
output rows of confusable colour pairs (red/orange, blue/purple, green/yellow) left greedy
accuracy at 0.44 -- this model hardly told the pairs apart to begin with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.shapes import recipe
from experiments.shapes.stages import Workdir, sft_from_warmstart
from experiments.shapes.warmstart import stage0
from visgrpo.data.io import load_dataset_dir, save_dataset

WARMSTART = Path(__file__).resolve().parents[1] / "learning" / "warmstart"  # committed there, with its results
CHANCE = 1 / 6  # six colours, uniform over the named object


@dataclass(frozen=True)
class Learning:
    """The warm start's answer prior: SFT steps on answers skewed to one colour."""

    colour: str = "red"
    share: float = 0.5  # share of the SFT answers replaced by ``colour``
    sft_steps: int = 60
    sft_lr: float = 1.0e-3
    seed: int = 0

    def sft_data(self, work: Workdir) -> Path:
        return work.root / "artifacts" / f"shapes_skew_{self.colour}{self.share:g}"


def skew(src: Path, dst: Path, colour: str, share: float, seed: int) -> dict:
    """Write the dataset directory ``src`` to ``dst`` with a ``share`` of its answers (drawn
    independently per record) replaced by ``colour``; returns counts. Atomic
    (``save_dataset``): ``dst`` is complete or absent.
    """
    ds, meta = load_dataset_dir(src)
    rng = np.random.default_rng(seed)
    swap = rng.random(len(ds)) < share  # [N]
    answers = [colour if s else a for a, s in zip(ds["answer"], swap, strict=True)]
    changed = sum(a != b for a, b in zip(answers, ds["answer"], strict=True))
    ds = ds.remove_columns("answer").add_column("answer", answers)
    save_dataset(ds, dst, meta=meta, overwrite=True)
    return {"records": len(ds), "replaced": int(swap.sum()), "changed": int(changed)}


def build(work: Workdir, tb: Learning = Learning(), out: Path = WARMSTART, log: Path | None = None) -> Path:
    """The shapes data (if absent), the skewed SFT data and the SFT from the committed shapes
    warm start, exported to ``out`` with ``warmstart.json``; skipped when ``out`` exists.
    """
    if (out / "config.json").exists():
        return out
    if not (work.data / "validation").exists():
        stage0(work, with_model=False)
    data = tb.sft_data(work)
    counts = skew(work.data / "train", data / "train", tb.colour, tb.share, tb.seed)
    data_args = [f"--data.train_path={data / 'train'}", f"--data.val_path={work.data / 'validation'}"]
    return sft_from_warmstart(work, recipe.SFT_CONFIG, "learning_sft", tb, data_args, {"sft_data": counts}, out, log)


# The RL recipe on this testbed (the recipes table in README.md): 16 prompts x G = 8, lr 5e-4,
# the shapes data and settings otherwise. Overlong shaping from the warm start's lengths
# (``python -m experiments.learning.overlong``, 100 held-out prompts: greedy 6 tokens each;
# 400 samples: median 6, p99 6, max 10), so onset ceil(1.25 * 10) = 13, window 4, L_max 17.
RL_LR = 5.0e-4
RL_PROMPTS = 16
MAX_NEW_TOKENS = 17
OVERLONG_CACHE = 4


def rl_overrides() -> list[str]:
    """CLI overrides of ``configs/experiment/shapes_rl.yaml`` for this testbed's RL recipe."""
    return [f"--model.init_args.learning_rate={RL_LR}", f"--data.batch_size={RL_PROMPTS}",
            f"--model.init_args.sampling.max_new_tokens={MAX_NEW_TOKENS}",
            "--model.init_args.objective_overrides="
            f"{json.dumps({'max_sampling_tries': 2, 'overlong_cache_length': OVERLONG_CACHE})}"]
