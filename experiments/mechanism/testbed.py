"""The discriminating testbed: ``visgrpo-data synth --task relational`` data, evidence masks,
a tiny Qwen2.5-VL, perception pretraining of its vision tower (:mod:`.perception`) and its
SFT warm start on the grounded reasoning chains.

``python -m experiments.mechanism --testbed relational`` builds these (once: every stage
is skipped when its output exists) and runs the study's arms from that warm start on that
data, with room for the reasoning chain (``max_new_tokens``). Paths live under the working
directory's ``artifacts/``; the warm start is exported to ``WARMSTART`` (commit it when it
is a few MB).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from experiments.mechanism.perception import pretrain_vision
from experiments.shapes.stages import CONFIGS, Workdir, fit
from visgrpo.data.io import load_dataset_dir

WARMSTART = Path(__file__).resolve().parent / "warmstart_relational"
TARGET = "<think>{reasoning}</think><answer>{answer}</answer>"


@dataclass(frozen=True)
class Relational:
    """Settings of the relational testbed (data, model, SFT, RL response length)."""

    num: int = 3000
    seed: int = 0
    size: int = 224  # 8x8 merged tokens of 28 px (Qwen2.5-VL)
    min_objects: int = 5
    max_objects: int = 6
    chain: str = "candidates"  # ~30 words, 77-102 tiny-tokenizer tokens (the full chain: 163-216)
    vision_steps: int = 1500  # perception pretraining of the vision tower (perception.py); 0 = none
    sft_steps: int = 1200
    sft_lr: float = 1e-3
    max_new_tokens: int = 128
    rl_lr: float = 1e-4  # the shapes recipe's 5e-4 took greedy accuracy from 0.14 to 0.02-0.04 in 4-10 steps
    rl_prompts: int = 4  # prompts per RL step (x 8 responses): ~6 s per step on one core
    # The tiny model (text width and depth, vision width and depth): see the README's testbed
    # section for the sizes tried (h64/v32, h128/v64, h256/v128 x 4 blocks).
    hidden_size: int = 128
    num_layers: int = 4
    vision_hidden: int = 64
    vision_depth: int = 2

    def raw(self, work: Workdir) -> Path:
        return work.root / "artifacts" / "relational_raw"

    def data(self, work: Workdir) -> Path:
        return work.root / "artifacts" / "relational"

    def model(self, work: Workdir) -> Path:
        return (work.root / "artifacts"
                / f"tiny_relational_h{self.hidden_size}L{self.num_layers}v{self.vision_hidden}d{self.vision_depth}")

    def perceiving(self, work: Workdir) -> Path:
        """The tiny model after perception pretraining (:func:`model` when ``vision_steps`` is 0)."""
        if not self.vision_steps:
            return self.model(work)
        return self.model(work).with_name(f"{self.model(work).name}_perception{self.vision_steps}")


def _data_cli(args: list[str]) -> None:
    from data_tools.cli import main as data_main

    if data_main(args):
        raise RuntimeError(f"visgrpo-data {args[0]} failed")


def corpus(raw: Path) -> list[str]:
    """Questions, answers and reasoning chains: the words the tiny tokenizer must know."""
    texts: list[str] = []
    for split in ("train", "validation"):
        ds, _ = load_dataset_dir(raw / split)
        texts += list(ds["question"]) + list(ds["answer"]) + list(ds["reasoning"])
    return texts


def build_data(work: Workdir, tb: Relational = Relational(), **dims) -> Path:
    """Synthetic relational data, a tiny model whose vocabulary covers it, evidence masks."""
    from visgrpo.models.tiny import build_tiny

    if not (tb.raw(work) / "validation").exists():
        _data_cli(["synth", "--task", "relational", "--out", str(tb.raw(work)), "--num", str(tb.num), "--seed",
                   str(tb.seed), "--size", str(tb.size), "--min-objects", str(tb.min_objects), "--max-objects",
                   str(tb.max_objects), "--chain", tb.chain, "--overwrite", "--no-progress"])
    if not (tb.model(work) / "config.json").exists():
        build_tiny("qwen2_5_vl", tb.model(work), corpus=corpus(tb.raw(work)), seed=tb.seed, hidden_size=tb.hidden_size,
                   num_layers=tb.num_layers, vision_hidden=tb.vision_hidden, vision_depth=tb.vision_depth,
                   **dims)
    if not (tb.data(work) / "validation").exists():
        _data_cli(["masks", "--dataset", str(tb.raw(work)), "--processor", str(tb.model(work)), "--out",
                   str(tb.data(work)), "--overwrite", "--no-progress"])
    if not (tb.perceiving(work) / "config.json").exists():
        pretrain_vision(tb.model(work), tb.data(work) / "train", tb.data(work) / "validation", tb.perceiving(work),
                        steps=tb.vision_steps, seed=tb.seed)
    return tb.data(work)


def data_overrides(work: Workdir, tb: Relational = Relational()) -> list[str]:
    """CLI overrides pointing a shapes config at the relational data and its response length."""
    return [f"--data.train_path={tb.data(work) / 'train'}", f"--data.val_path={tb.data(work) / 'validation'}",
            f"--model.init_args.sampling.max_new_tokens={tb.max_new_tokens}"]


def rl_overrides(work: Workdir, tb: Relational = Relational()) -> list[str]:
    """:func:`data_overrides` plus the relational RL settings (learning rate, prompts per step)."""
    return [*data_overrides(work, tb), f"--model.init_args.learning_rate={tb.rl_lr}",
            f"--data.batch_size={tb.rl_prompts}"]


def warm_start(work: Workdir, tb: Relational = Relational(), out: Path = WARMSTART, log: Path | None = None) -> Path:
    """SFT of the tiny model on the reasoning chains (skipped when ``out`` exists)."""
    if (out / "config.json").exists():
        return out
    name = tb.perceiving(work).name
    export = work.root / "runs" / "relational_sft" / name / "export"
    fit(work, [CONFIGS / "experiment" / "shapes_sft.yaml"], [
        f"--trainer.max_steps={tb.sft_steps}", "--trainer.val_check_interval=100",
        f"--model.init_args.learning_rate={tb.sft_lr}", f"--model.init_args.policy.name_or_path={tb.perceiving(work)}",
        f"--model.init_args.target_template={TARGET}",
        f"--trainer.logger.init_args.tracking_uri={work.tracking_uri}",
        "--trainer.logger.init_args.experiment_name=relational_sft", f"--trainer.logger.init_args.run_name={name}",
        f"--trainer.default_root_dir=runs/relational_sft/{name}",
        "--trainer.callbacks+=visgrpo.lightning.callbacks.ExportModel", f"--trainer.callbacks.dirpath={export}",
        *data_overrides(work, tb),
    ], log=log)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(export, out)
    return out
