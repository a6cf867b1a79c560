"""Stage 0 + stage 1: data, tiny model, evidence masks, then the SFT warm start.

``python -m experiments.shapes.warmstart`` (from the repository root) writes the synthetic
data and a random-weight tiny Qwen2.5-VL under ``artifacts/``, fine-tunes it with
``configs/experiment/shapes_sft.yaml`` (MLflow experiment ``shapes_sft``) and exports the
result as a Hugging Face directory to ``experiments/shapes/warmstart/`` (committed, a few MB),
with ``warmstart.json`` recording the settings and the validation accuracy. Everything is
seeded, so a rerun reproduces it; the RL stages start from that directory.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict
from pathlib import Path

from experiments.shapes import recipe
from experiments.shapes.stages import (
    WARMSTART_DIR,
    DataSettings,
    Workdir,
    crop,
    fit,
    make_data,
    make_masks,
    make_model,
    write_json,
)


def stage0(work: Workdir, with_model: bool = True, data: DataSettings | None = None) -> None:
    """Synthetic data (default :data:`recipe.DATA`), object-preserving crops, (optionally) the
    random-weight tiny model, and the evidence masks (for the new model, else the warm start's
    processor).
    """
    data = data or recipe.DATA
    make_data(work, data)
    crop(work, recipe.CROP_PIPELINE, data.seed)
    if with_model:
        make_model(work, seed=recipe.MODEL_SEED, **recipe.MODEL_DIMS)
    make_masks(work, work.model if with_model else WARMSTART_DIR)


def sft(work: Workdir, out: Path, steps: int, val_every: int, log: Path | None = None) -> float:
    """Stage 1: SFT of ``work.model``, exported (Hugging Face directory) to ``out``."""
    export = work.root / "runs" / "shapes_sft" / "export"
    overrides = [
        f"--trainer.max_steps={steps}",
        f"--trainer.val_check_interval={val_every}",
        f"--model.init_args.learning_rate={recipe.SFT_LR}",
        f"--model.init_args.policy.name_or_path={work.model}",
        f"--trainer.logger.init_args.tracking_uri={work.tracking_uri}",
        '--trainer.logger.init_args.tags={"study": "warmstart"}',
        "--trainer.callbacks+=visgrpo.lightning.callbacks.ExportModel",
        f"--trainer.callbacks.dirpath={export}",
    ]
    seconds = fit(work, [recipe.SFT_CONFIG], overrides, log=log)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(export, out)
    return seconds


def last_val_accuracy(work: Workdir) -> dict:
    """The SFT run's last validation metrics (from the MLflow store)."""
    from experiments.shapes.runs import client_for

    client = client_for(work.tracking_uri)
    exp = client.get_experiment_by_name("shapes_sft")
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    return {k: v for k, v in run.data.metrics.items() if k.startswith("val/")} | {"run_id": run.info.run_id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".", help="where artifacts/, runs/ and mlflow.db go")
    parser.add_argument("--out", default="runs/shapes/warmstart",
                        help="export directory of the warm start "
                             f"(the committed {WARMSTART_DIR.name}/ only when named)")
    parser.add_argument("--steps", type=int, default=recipe.SFT_STEPS)
    parser.add_argument("--val-every", type=int, default=50)
    args = parser.parse_args(argv)
    work = Workdir(Path(args.workdir).resolve())
    stage0(work)
    seconds = sft(work, Path(args.out), args.steps, args.val_every)
    meta = {
        "data": asdict(recipe.DATA), "model_dims": recipe.MODEL_DIMS, "model_seed": recipe.MODEL_SEED,
        "sft_steps": args.steps, "sft_lr": recipe.SFT_LR, "seconds": round(seconds, 1),
        "validation": last_val_accuracy(work),
    }
    write_json(Path(args.out) / "warmstart.json", meta)
    print(f"warm start written to {args.out}: {meta['validation']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
