"""The Lightning CLI of visgrpo: ``visgrpo fit|validate|test|predict --config ...``.

Models are given by ``class_path`` (``visgrpo.lightning.RLVRModule`` or
``visgrpo.lightning.SFTModule``); the data module is ``EvidenceDataModule``. The model
directory is linked from the model to the data module (``link_arguments``), so the
processor and its fingerprint come from the one place. The default logger is MLflow
with an embedded SQLite store in the working directory.

Each run has its own directory and a readable MLflow run name (:func:`run_layout`): without
an explicit ``trainer.default_root_dir`` it is ``runs/<experiment>/<method>-seed<seed>``,
so ``fit`` and a later ``validate --ckpt_path last`` of the same config meet there and
another config's checkpoints are never picked up. Config errors that need no model (a
missing split or dataset directory) are raised before the model loads, and the end of a
run prints one line saying where its checkpoint, export and MLflow run went.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

from visgrpo.credit import CREDIT_METHODS
from visgrpo.lightning.callbacks import StepProgressBar, mlflow_client, run_summary
from visgrpo.lightning.checkpoint_io import WeightsOnlyCheckpointIO, refusal
from visgrpo.lightning.compose import expand_config_args
from visgrpo.lightning.datamodule import EvidenceDataModule
from visgrpo.lightning.errors import ConfigError, check_split_paths
from visgrpo.lightning.mlflow_store import prepare_store
from visgrpo.lightning.record import log_effective_config
from visgrpo.lightning.rlvr import RLVRModule
from visgrpo.lightning.sft import SFTModule

RUNS_ROOT = "runs"  # run directories go to runs/<experiment>/<run> unless default_root_dir is set


class SaveConfigToMLflow(SaveConfigCallback):
    """Saves the resolved config to ``<default_root_dir>/config.yaml`` and, with an MLflow
    logger, as the run artifact ``config.yaml`` (MLflow loggers have no ``log_dir``).
    """

    def __init__(self, parser, config, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        out = Path(trainer.default_root_dir) / self.config_filename
        out.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, out, skip_none=False, overwrite=True, multifile=False)
        client, run_id = mlflow_client(trainer)
        if client is not None:
            client.log_artifact(run_id, str(out))  # the fully composed config (= --print_config)
        log_effective_config(trainer, pl_module)


def prepare_mlflow_stores(logger_config) -> None:
    """Create each configured MLFlowLogger's SQLite store and experiment once, under a file
    lock (``visgrpo.lightning.mlflow_store``), before the loggers are instantiated.
    """
    configs = logger_config if isinstance(logger_config, list) else [logger_config]
    for cfg in configs:
        if str(getattr(cfg, "class_path", "")).endswith("MLFlowLogger"):
            args = cfg.init_args
            prepare_store(args.get("tracking_uri") or os.getenv("MLFLOW_TRACKING_URI"),
                          args.get("experiment_name"), args.get("artifact_location"))


def _named_credit(name: str) -> tuple[str, type]:
    return name, CREDIT_METHODS.get(name)


def _mlflow_loggers(logger_config) -> list:
    configs = logger_config if isinstance(logger_config, list) else [logger_config]
    return [c for c in configs if str(getattr(c, "class_path", "")).endswith("MLFlowLogger")]


def method_label(model_config) -> str:
    """``<objective>[+<credit>...]`` of an RL model config (``dapo+ease``), ``sft`` for SFT."""
    class_path = str(getattr(model_config, "class_path", ""))
    args = getattr(model_config, "init_args", None) or {}
    if class_path.endswith("SFTModule"):
        return "sft"
    names = {f"{c.__module__}.{c.__qualname__}": n for n, c in map(_named_credit, CREDIT_METHODS.names())}
    credit = [names.get(str(c.class_path), str(c.class_path).rsplit(".", 1)[-1].lower())
              for c in (args.get("credit") or [])]
    return "+".join([str(args.get("objective") or class_path.rsplit(".", 1)[-1].lower()), *credit])


def run_layout(cfg) -> tuple[str, str, str]:
    """``(experiment, run name, run directory)`` of a parsed config.

    experiment: the MLflow logger's ``experiment_name`` (``default`` without one); run
    name: ``<experiment>/<method>/seed<seed>`` (:func:`method_label`, the module's seed);
    directory: ``trainer.default_root_dir`` when set, else
    ``runs/<experiment>/<method>-seed<seed>``.
    """
    loggers = _mlflow_loggers(cfg.trainer.logger)
    experiment = str(loggers[0].init_args.get("experiment_name") or "default") if loggers else "default"
    model_args = getattr(cfg.model, "init_args", None) or {}
    seed = model_args.get("seed", cfg.get("seed_everything"))
    method = method_label(cfg.model)
    run_dir = cfg.trainer.default_root_dir or str(Path(RUNS_ROOT) / experiment / f"{method}-seed{seed}")
    return experiment, f"{experiment}/{method}/seed{seed}", str(run_dir)


class VisgrpoCLI(LightningCLI):
    """LightningCLI with the model path linked into the data module."""

    def before_instantiate_classes(self) -> None:
        """Before anything loads: the run's directory and MLflow run name (:func:`run_layout`),
        the dataset paths the subcommand reads (:func:`check_split_paths`), the MLflow store.
        Checkpoints without a ``dirpath`` go to ``<run dir>/checkpoints``, where
        ``--ckpt_path last`` finds the run to resume or validate.
        """
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand:
            check_split_paths(self.subcommand, cfg.data.train_path, cfg.data.val_path, cfg.data.test_path)
        _, run_name, root = run_layout(cfg)
        cfg.trainer.default_root_dir = root
        for logger in _mlflow_loggers(cfg.trainer.logger):
            if not logger.init_args.get("run_name"):
                logger.init_args.run_name = run_name
        prepare_mlflow_stores(cfg.trainer.logger)
        for cb in cfg.trainer.callbacks or []:
            if getattr(cb, "class_path", "").endswith("ModelCheckpoint") and cb.init_args.get("dirpath") is None:
                cb.init_args.dirpath = str(Path(root) / "checkpoints")

    def _instantiate_trainer(self, config: dict, callbacks: list):
        """Lightning's trainer, with :class:`StepProgressBar` as the default rich bar."""
        from lightning.pytorch.callbacks import ProgressBar
        from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE

        given = [*(config.get("callbacks") or []), *callbacks]
        if _RICH_AVAILABLE and config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, StepProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def _summary(self) -> None:
        if self.trainer.is_global_zero:
            print(run_summary(self.trainer), flush=True)

    after_fit = after_validate = after_test = _summary

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a local ``--ckpt_path``'s hyper-parameters with ``weights_only=True``;
        a refusal becomes the one-line :class:`UnsafeCheckpoint`.
        """
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
            "description": cli_description(),
        },
        auto_configure_optimizers=False,
    )


def cli_description() -> str:
    """``fit --help``'s description: the model classes and every registered credit method."""
    credit = ", ".join(f"{n} ({c.__module__}.{c.__qualname__})"
                       for n, c in map(_named_credit, CREDIT_METHODS.names()) if n != "none")
    models = ", ".join(f"{m.__module__}.{m.__qualname__}" for m in (RLVRModule, SFTModule))
    return ("visgrpo: GRPO-family RL of vision-language models with visually grounded credit. Compose "
            f"configs/ with repeated --config. Model classes (model.class_path): {models}. "
            f"Credit methods (model.init_args.credit): {credit}.")


def run_cli(args: list[str] | None = None) -> None:
    """``visgrpo fit|validate|test|predict ...`` (``args`` default: the command line)."""
    build_cli(args, run=True)
