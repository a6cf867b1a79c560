"""Callbacks: rollout tables and attention overlays to MLflow, export of the trained model.

All of them log through the trainer's ``MLFlowLogger`` when there is one and write plain
files under ``trainer.default_root_dir`` otherwise, so a run without MLflow still leaves
its figures behind.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar

from visgrpo.models.reference import is_peft_model


def mlflow_client(trainer):
    """``(client, run_id)`` of the trainer's MLFlowLogger, or ``(None, None)``."""
    from lightning.pytorch.loggers import MLFlowLogger

    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            return logger.experiment, logger.run_id
    return None, None


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, labelled ``Epoch N`` (not ``Epoch 0/-2``) when the run
    is bounded by ``max_steps`` alone (``max_epochs`` is then -1).
    """

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        description = f"Epoch {current_epoch}"
        return f"{description:{len(self.validation_description)}}"


class RolloutTable(L.Callback):
    """Logs a table of sample rollouts (prompt id, answer, completion, reward) every N steps.

    Args:
        every_n_steps: logging period in optimiser steps.
        max_rows: responses per table.
    """

    def __init__(self, every_n_steps: int = 10, max_rows: int = 16) -> None:
        self.every_n_steps = every_n_steps
        self.max_rows = max_rows

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        rollout = getattr(pl_module, "last_rollout", None)
        step = trainer.global_step
        if rollout is None or step % self.every_n_steps:
            return
        n = min(self.max_rows, len(rollout.completions))
        rewards = getattr(pl_module, "last_rewards", None)
        table = {
            "step": [step] * n,
            "id": [str(s.get("id", "")) for s in rollout.samples[:n]],
            "answer": [str(s.get("answer", "")) for s in rollout.samples[:n]],
            "completion": list(rollout.completions[:n]),
            "reward": [float(r) for r in rewards[:n]] if rewards is not None else [float("nan")] * n,
            "group": [int(g) for g in rollout.group_ids[:n]],
        }
        client, run_id = mlflow_client(trainer)
        if client is not None:
            client.log_table(run_id, data=table, artifact_file=f"rollouts/step_{step:06d}.json")


def attention_map(attn: torch.Tensor, response_mask: torch.Tensor, grid_hw: tuple[int, int]) -> np.ndarray:
    """Mean attention of the real response rows on the first image's tokens, as a grid.

    Args:
        attn: [T, N] attention of response rows on the sample's image tokens.
        response_mask: [T] bool.
        grid_hw: merged-token grid (rows, cols) of the first image.
    """
    rows = attn[response_mask.bool()]  # [T_real, N]
    mean = rows.mean(0) if len(rows) else torch.zeros(attn.shape[-1])  # [N]
    h, w = grid_hw
    return mean[: h * w].reshape(h, w).float().cpu().numpy()


def overlay_figure(image, heat: np.ndarray, title: str = "", boxes=()):
    """Matplotlib figure of ``image`` with ``heat`` (token grid) overlaid and the evidence
    ``boxes`` (xyxy pixels) outlined.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=100)
    ax.imshow(image)
    ax.imshow(heat, cmap="inferno", alpha=0.55, extent=(0, image.width, image.height, 0), interpolation="nearest")
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", linewidth=1.2))
    ax.set_title(title, fontsize=7)
    ax.axis("off")
    fig.tight_layout()
    return fig


class AttentionOverlay(L.Callback):
    """Attention of the policy's answers on fixed validation images, at fit start and every N steps.

    Greedy answers are generated for the first ``num_images`` validation prompts; their mean
    response-to-image attention at ``layer`` is drawn over the image.

    Args:
        every_n_steps: period in optimiser steps (and once before training, step 0).
        num_images: number of fixed validation prompts.
        out_dir: directory for the PNGs (default ``<default_root_dir>/attention``).
        layer: decoder layer drawn: an index or a name (``last``, ``two_thirds`` = EASE's
            layer, ...), or a list of them (one PNG per layer, ``..._L<layer>_img<k>.png``);
            default the module's diagnostics layer.
    """

    def __init__(self, every_n_steps: int = 50, num_images: int = 4, out_dir: str | None = None,
                 layer: int | str | list[int | str] | None = None) -> None:
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self.out_dir = out_dir
        self.layer = layer

    def _render(self, trainer, pl_module, tag: str) -> list[Path]:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "fixed_prompts"):
            return []
        prompts = dm.fixed_prompts(self.num_images)
        out = Path(self.out_dir or Path(trainer.default_root_dir) / "attention")
        out.mkdir(parents=True, exist_ok=True)
        client, run_id = mlflow_client(trainer)
        paths = []
        import matplotlib.pyplot as plt

        layers = self.layer if isinstance(self.layer, list) else [self.layer]
        for layer in layers:
            suffix = f"_L{layer}" if isinstance(self.layer, list) else ""
            maps = pl_module.attention_maps(prompts, layer=layer)
            paths += self._draw(maps, prompts, out, f"{tag}{suffix}", client, run_id, plt)
        return paths

    @staticmethod
    def _draw(maps, prompts, out: Path, tag: str, client, run_id, plt) -> list[Path]:
        paths = []
        for k, (image, heat, completion) in enumerate(maps):
            sample = prompts.samples[k]
            boxes, box_image = sample.get("boxes") or [], sample.get("box_image")
            if box_image:  # multi-image samples: the boxes of the first image
                boxes = [b for b, i in zip(boxes, box_image, strict=True) if i == 0]
            title = f"{tag} | gold {sample.get('answer', '')} | {completion.strip()[:32] or '(empty)'}"
            fig = overlay_figure(image, heat, title=title, boxes=boxes)
            path = out / f"{tag}_img{k}.png"
            fig.savefig(path)
            plt.close(fig)
            paths.append(path)
            if client is not None:
                client.log_artifact(run_id, str(path), artifact_path="attention")
        return paths

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step == 0:
            self._render(trainer, pl_module, "step000000")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step and step % self.every_n_steps == 0:
            self._render(trainer, pl_module, f"step{step:06d}")

    def on_train_end(self, trainer, pl_module) -> None:
        self._render(trainer, pl_module, "final")


def export_hf(policy, processor, out_dir: str | Path, merged: bool = True) -> Path:
    """Write the policy as a Hugging Face directory.

    Args:
        policy: a plain transformers model or a ``peft.PeftModel``.
        processor: saved beside the weights so the directory loads on its own.
        out_dir: destination.
        merged: for LoRA, merge the adapters into a copy of the base weights (a plain
            model directory); otherwise save the adapter only.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = policy
    if is_peft_model(policy) and merged:
        model = copy.deepcopy(policy).merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


class ExportModel(L.Callback):
    """At the end of fit, export the model to ``dirpath`` and log it as an MLflow artifact.

    Args:
        dirpath: export directory (default ``<default_root_dir>/export``).
        merged: merge LoRA adapters into the base weights.
    """

    def __init__(self, dirpath: str | None = None, merged: bool = True) -> None:
        self.dirpath = dirpath
        self.merged = merged
        self.exported: Path | None = None  # where the last export went (the end-of-run summary)

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        out = export_hf(
            pl_module.policy, pl_module.processor,
            self.dirpath or Path(trainer.default_root_dir) / "export", self.merged
        )
        self.exported = out
        client, run_id = mlflow_client(trainer)
        if client is not None:
            client.log_artifacts(run_id, str(out), artifact_path="model")


def run_summary(trainer) -> str:
    """One line: where the run's directory, checkpoint (written or loaded), export and MLflow
    run are (printed by the CLI at the end of ``fit``, ``validate`` and ``test``).
    """
    from lightning.pytorch.loggers import MLFlowLogger

    def shown(path) -> str:  # relative to the working directory when under it
        path = Path(path).resolve()
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)

    parts = [f"run dir {shown(trainer.default_root_dir)}"]
    ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") if trainer.checkpoint_callback else ""
    if ckpt and trainer.state.fn == "fit":
        parts.append(f"checkpoint {shown(ckpt)}")
    elif trainer.ckpt_path:
        parts.append(f"loaded {shown(trainer.ckpt_path)}")
    parts += [f"export {shown(cb.exported)}" for cb in trainer.callbacks if isinstance(cb, ExportModel) and cb.exported]
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            name = logger.experiment.get_run(logger.run_id).info.run_name
            parts.append(f"MLflow run {name!r} ({logger.run_id}) in {logger._tracking_uri}")
    return "visgrpo: " + "; ".join(parts)
