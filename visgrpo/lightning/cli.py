"""The Lightning CLI of visgrpo: ``visgrpo fit|validate|test|predict --config ...``.

Models are given by ``class_path`` (``visgrpo.lightning.RLVRModule`` or
``visgrpo.lightning.SFTModule``); the data module is ``EvidenceDataModule``. The model
directory is linked from the model to the data module (``link_arguments``), so the
processor and its fingerprint come from the one place. The default logger is MLflow
with an embedded SQLite store in the working directory.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

from visgrpo.lightning.callbacks import mlflow_client
from visgrpo.lightning.checkpoint_io import WeightsOnlyCheckpointIO, refusal
from visgrpo.lightning.compose import expand_config_args
from visgrpo.lightning.datamodule import EvidenceDataModule
from visgrpo.lightning.errors import ConfigError
from visgrpo.lightning.mlflow_store import prepare_store


class SaveConfigToMLflow(SaveConfigCallback):
    """Saves the resolved config to ``<default_root_dir>/config.yaml`` and, with an MLflow
    logger, as the run artifact ``config.yaml`` (MLflow loggers have no ``log_dir``)."""

    def __init__(self, parser, config, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        out = Path(trainer.default_root_dir) / self.config_filename
        out.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, out, skip_none=False, overwrite=True, multifile=False)
        client, run_id = mlflow_client(trainer)
        if client is not None:
            client.log_artifact(run_id, str(out))


def prepare_mlflow_stores(logger_config) -> None:
    """Create each configured MLFlowLogger's SQLite store and experiment once, under a file
    lock (``visgrpo.lightning.mlflow_store``), before the loggers are instantiated."""
    configs = logger_config if isinstance(logger_config, list) else [logger_config]
    for cfg in configs:
        if str(getattr(cfg, "class_path", "")).endswith("MLFlowLogger"):
            args = cfg.init_args
            prepare_store(args.get("tracking_uri") or os.getenv("MLFLOW_TRACKING_URI"),
                          args.get("experiment_name"), args.get("artifact_location"))


class VisgrpoCLI(LightningCLI):
    """LightningCLI with the model path linked into the data module."""

    def before_instantiate_classes(self) -> None:
        """Checkpoints without a ``dirpath`` go to ``<default_root_dir>/checkpoints``: one
        directory per experiment, where ``--ckpt_path last`` finds the run to resume."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg.trainer.default_root_dir or "."
        prepare_mlflow_stores(cfg.trainer.logger)
        for cb in cfg.trainer.callbacks or []:
            if getattr(cb, "class_path", "").endswith("ModelCheckpoint") and cb.init_args.get("dirpath") is None:
                cb.init_args.dirpath = str(Path(root) / "checkpoints")

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a local ``--ckpt_path``'s hyper-parameters with ``weights_only=True``;
        a refusal becomes the one-line :class:`UnsafeCheckpoint`."""
        try:
            super()._parse_ckpt_path()
        except pickle.UnpicklingError as err:
            raise refusal(self.config[self.config.subcommand].get("ckpt_path"), err) from None

    def instantiate_trainer(self, **kwargs):
        """The trainer, with atomic checkpoint writes and weights-only loads (:class:`WeightsOnlyCheckpointIO`)."""
        trainer = super().instantiate_trainer(**kwargs)
        strategy = trainer.strategy
        io = strategy.checkpoint_io
        wrapped = isinstance(io, _WrappingCheckpointIO)  # e.g. AsyncCheckpointIO: replace its inner IO
        inner = io.checkpoint_io if wrapped else io
        if type(inner) is TorchCheckpointIO:
            if wrapped:
                io.checkpoint_io = WeightsOnlyCheckpointIO()
            else:
                strategy.checkpoint_io = WeightsOnlyCheckpointIO()
        elif not isinstance(inner, WeightsOnlyCheckpointIO):
            raise ConfigError("trainer.plugins", f"{type(inner).__name__} is not supported: visgrpo loads "
                              "checkpoints weights-only (WeightsOnlyCheckpointIO)")
        return trainer

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.policy.name_or_path", "data.model_path")
        # One seed per experiment: the data order follows the module's seed.
        parser.link_arguments("model.init_args.seed", "data.seed")


def build_cli(args: list[str] | None, run: bool = True) -> VisgrpoCLI:
    """The CLI over ``args`` (``None``: ``sys.argv``, already expanded by ``visgrpo.cli.main``).

    ``run=False`` instantiates the trainer, model and data module without a subcommand
    (so ``args`` then starts with the options, not ``fit``).
    """
    return VisgrpoCLI(
        model_class=None,
        datamodule_class=EvidenceDataModule,
        subclass_mode_model=True,
        args=None if args is None else expand_config_args(list(args)),
        run=run,
        save_config_callback=SaveConfigToMLflow,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "parser_mode": "omegaconf",
            "exit_on_error": False,  # visgrpo.cli.main prints one line (ArgumentError) instead
            "description": "visgrpo: GRPO-family RL of vision-language models with visually grounded "
            "credit (SAYO, VGPO, AT-RL, EASE). Compose configs/ with repeated --config.",
        },
        auto_configure_optimizers=False,
    )


def run_cli(args: list[str] | None = None) -> None:
    """``visgrpo fit|validate|test|predict ...`` (``args`` default: the command line)."""
    build_cli(args, run=True)
