"""Stages of the shapes experiment, each a plain function over a working directory.

Stage 0 writes the synthetic data (``visgrpo-data synth``), the tiny Qwen2.5-VL whose
vocabulary covers the data's words (``visgrpo.models.tiny``) and the evidence masks for its
processor (``visgrpo-data masks``). Stages 1 and 2 are Lightning CLI fits
(``visgrpo fit --config ...``), run in a subprocess each so every run starts from a clean
process (seeds, MLflow logger, threads) exactly as a user's command line would.

Everything generated goes under the working directory's ``artifacts/`` and ``runs/`` and the
MLflow store ``mlflow.db`` (all git-ignored at the repository root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
WARMSTART_DIR = Path(__file__).resolve().parent / "warmstart"


@dataclass(frozen=True)
class DataSettings:
    """Synthetic data settings (``visgrpo-data synth``); the split is deterministic in ``seed``."""

    num: int = 2400
    seed: int = 0
    question_types: tuple[str, ...] = ("colour", "count")
    choice_fraction: float = 1.0
    min_objects: int = 4
    max_objects: int = 5
    val_fraction: float = 0.1
    size: int = 224

    def synth_args(self, out: Path) -> list[str]:
        return [
            "synth", "--out", str(out), "--num", str(self.num), "--seed", str(self.seed),
            "--question-types", ",".join(self.question_types),
            "--choice-fraction", str(self.choice_fraction),
            "--min-objects", str(self.min_objects), "--max-objects", str(self.max_objects),
            "--val-fraction", str(self.val_fraction), "--size", str(self.size), "--overwrite", "--no-progress",
        ]


@dataclass
class Workdir:
    """Paths of one experiment working directory (default: the current directory)."""

    root: Path = field(default_factory=Path.cwd)

    @property
    def raw(self) -> Path:
        return self.root / "artifacts" / "shapes_raw"

    @property
    def cropped(self) -> Path:
        return self.root / "artifacts" / "shapes_cropped"

    @property
    def data(self) -> Path:
        return self.root / "artifacts" / "shapes"

    @property
    def model(self) -> Path:
        return self.root / "artifacts" / "tiny_qwen2_5_vl"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"


def _data_cli(args: list[str]) -> None:
    from data_tools.cli import main as data_main

    code = data_main(args)
    if code:
        raise RuntimeError(f"visgrpo-data {args[0]} failed with exit code {code}")


def make_data(work: Workdir, settings: DataSettings) -> Path:
    """Stage 0a: the raw synthetic dataset (train/ and validation/) under ``work.raw``."""
    _data_cli(settings.synth_args(work.raw))
    return work.raw


def crop(work: Workdir, pipeline: str = "safe_crop,safe_crop", seed: int = 0) -> Path:
    """Stage 0b: object-preserving random crops of every split (``visgrpo-data augment``).

    The tiny random-init model cannot learn to read objects covering ~3% of the image within
    a CPU budget; two composed ``safe_crop`` crops keep the evidence box whole and make it
    cover ~7-45% of the image (median ~19%), a difficulty spread the model can learn from.
    """
    for split in ("train", "validation"):
        _data_cli(["augment", "--dataset", str(work.raw / split), "--out", str(work.cropped / split),
                   "--pipeline", pipeline, "--copies", "1", "--seed", str(seed), "--overwrite", "--no-progress"])
    return work.cropped


def corpus_of(raw: Path) -> list[str]:
    """Questions and answers of every split: the words the tiny tokenizer must know."""
    from visgrpo.data.io import load_dataset_dir

    texts: list[str] = []
    for split in ("train", "validation"):
        ds, _ = load_dataset_dir(raw / split)
        texts += list(ds["question"]) + list(ds["answer"])
    return texts


def make_model(work: Workdir, seed: int = 0, **dims) -> Path:
    """Stage 0c: a tiny random-weight Qwen2.5-VL whose vocabulary covers the data."""
    from visgrpo.models.tiny import build_tiny

    return build_tiny("qwen2_5_vl", work.model, corpus=corpus_of(work.raw), seed=seed, **dims)


def make_masks(work: Workdir, processor: Path, source: Path | None = None) -> Path:
    """Stage 0d: evidence masks of ``source`` (default: the cropped data) for ``processor``
    (its exact token grid), written to ``work.data``.
    """
    _data_cli(["masks", "--dataset", str(source or work.cropped), "--processor", str(processor),
               "--out", str(work.data), "--overwrite", "--no-progress"])
    return work.data


def fit(work: Workdir, configs: list[str | Path], overrides: list[str] = (), log: Path | None = None,
        threads: int | None = None, subcommand: str = "fit") -> float:
    """Run ``visgrpo fit`` (a subprocess in ``work.root``) and return its wall time in seconds.

    Args:
        work: working directory (relative paths in the configs resolve here).
        configs: ``--config`` files, composed in order.
        overrides: further ``--key=value`` arguments.
        log: file receiving the run's stdout/stderr (default: inherit).
        threads: torch intra-op threads of the run (``OMP_NUM_THREADS``).
        subcommand: ``fit`` or ``validate``.
    """
    cmd = [sys.executable, "-m", "visgrpo.cli", subcommand]
    for c in configs:
        cmd += ["--config", str(c)]
    cmd += list(overrides)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    # the run imports this checkout's visgrpo, whatever the caller's PYTHONPATH (cwd is work.root)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    t0 = time.time()
    if log is None:
        proc = subprocess.run(cmd, cwd=work.root, env=env)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, cwd=work.root, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        where = f" (log: {log})" if log else ""
        raise RuntimeError(f"visgrpo {subcommand} failed with exit code {proc.returncode}{where}: {' '.join(cmd)}")
    return time.time() - t0


def write_json(path: Path, obj) -> None:
    """Atomic JSON write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def settings_dict(settings: DataSettings) -> dict:
    return asdict(settings)


def sft_from_warmstart(work: Workdir, config: str | Path, name: str, tb, data_args: list[str], record: dict,
                       out: Path, log: Path | None = None) -> Path:
    """SFT from the committed shapes warm start on the data ``data_args`` name, with the
    testbed ``tb``'s ``sft_steps`` / ``sft_lr`` / ``seed``; the export lands in ``out``
    atomically, with ``warmstart.json`` (the testbed, ``record`` and the seconds it took).
    """
    export = work.root / "runs" / name / "export"
    seconds = fit(work, [config], [
        f"--trainer.max_steps={tb.sft_steps}", f"--trainer.val_check_interval={tb.sft_steps}",
        f"--model.init_args.learning_rate={tb.sft_lr}", "--model.init_args.warmup_steps=0",
        f"--model.init_args.policy.name_or_path={WARMSTART_DIR}", f"--seed_everything={tb.seed}",
        *data_args, f"--trainer.logger.init_args.tracking_uri={work.tracking_uri}",
        f"--trainer.logger.init_args.experiment_name={name}", f"--trainer.default_root_dir=runs/{name}",
        "--trainer.callbacks+=visgrpo.lightning.callbacks.ExportModel", f"--trainer.callbacks.dirpath={export}",
    ], log=log)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(export, tmp)
    write_json(tmp / "warmstart.json", {"testbed": asdict(tb), "source": "experiments/shapes/warmstart",
                                        **record, "seconds": round(seconds, 1)})
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out
