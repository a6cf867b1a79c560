"""A recipe's composed config, read without building anything: what ``visgrpo plan`` plans for.

The config goes through the same parser as ``visgrpo fit`` (the Lightning CLI of
:mod:`visgrpo.lightning.cli`, with experiment parts and repeated ``--config`` composed by
:func:`visgrpo.lightning.compose.expand_config_args`), so defaults, overrides and bad keys
are exactly those of training; but no class is instantiated (no model, data or logger). The
credit methods alone are built (small objects) to ask them which signals the forward pass
must produce, as :meth:`visgrpo.lightning.RLVRModule.set_credit` does.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import dataclass

from visgrpo.credit import ComposedCredit
from visgrpo.credit.base import resolve_layers
from visgrpo.data.signals import SignalRequest
from visgrpo.lightning.cli import VisgrpoCLI
from visgrpo.lightning.compose import expand_config_args
from visgrpo.lightning.datamodule import EvidenceDataModule
from visgrpo.lightning.errors import ConfigError, check_hyperparameters, require
from visgrpo.models.loading import PolicyConfig
from visgrpo.models.lora import LoraSettings
from visgrpo.objectives import get_preset
from visgrpo.objectives.presets import ObjectiveOverrides
from visgrpo.rollout.vllm_engine import VLLMRolloutEngine


class _ParseOnlyCLI(VisgrpoCLI):
    """The training CLI's parser and config, nothing instantiated (no seed set, no store made)."""

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


@dataclass(frozen=True)
class Recipe:
    """What the plan reads from a composed config."""

    policy: PolicyConfig
    credit: list  # instantiated credit methods
    credit_names: list[str]
    prompts: int
    G: int
    prompt_tokens: int
    response_tokens: int
    micro_batch_size: int
    share_prefix: bool
    kl: bool
    engine: str
    vllm_share: float
    logprob_chunk: int
    probe_chunk: int
    diagnostics_layer: int | str
    devices: object
    strategy: str


def parse_config(args: list[str]):
    """The training parser's config of ``args`` (``--config`` files, flags) without instantiating."""
    with warnings.catch_warnings():  # `visgrpo plan` passes its own args, not sys.argv
        warnings.filterwarnings("ignore", message="LightningCLI.s args parameter")
        cli = _ParseOnlyCLI(
            model_class=None, datamodule_class=EvidenceDataModule, subclass_mode_model=True,
            args=expand_config_args(list(args)), run=False, save_config_callback=None,
            parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False}, auto_configure_optimizers=False,
        )
    return cli.config


def _credit_methods(entries) -> tuple[list, list[str]]:
    methods, names = [], []
    for i, entry in enumerate(entries or []):
        module, _, name = str(entry.class_path).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
            methods.append(cls(**(entry.init_args.as_dict() if entry.get("init_args") else {})))
        except (ImportError, AttributeError, TypeError, ValueError) as err:
            raise ConfigError(f"model.init_args.credit[{i}]", str(err)) from err
        names.append(name)
    return methods, names


def _policy(ns) -> PolicyConfig:
    values = ns.as_dict()
    lora = values.pop("lora", None)
    try:
        return PolicyConfig(**values, lora=LoraSettings(**lora) if lora else None)
    except (TypeError, ValueError) as err:
        raise ConfigError("model.init_args.policy", str(err)) from err


def read_recipe(args: list[str]) -> Recipe:
    """The :class:`Recipe` of the training command line ``args`` (without the subcommand).

    Raises:
        ConfigError: the model is not ``RLVRModule`` or a value is refused (names the key).
    """
    config = parse_config(args)
    model = config.model
    if not str(model.class_path).endswith("RLVRModule"):
        raise ConfigError("model.class_path", f"visgrpo plan plans RL steps (RLVRModule), got {model.class_path}")
    ia = model.init_args
    sampling = ia.sampling
    check_hyperparameters(micro_batch_size=ia.micro_batch_size, logprob_chunk_size=ia.logprob_chunk_size,
                          attention_chunk_size=ia.attention_chunk_size)
    require(config.data.batch_size >= 1, "data.batch_size", f"must be >= 1, got {config.data.batch_size}")
    require(config.data.max_prompt_tokens >= 1, "data.max_prompt_tokens",
            f"must be >= 1, got {config.data.max_prompt_tokens}")
    require(sampling.num_generations >= 1, "model.init_args.sampling.num_generations",
            f"must be >= 1, got {sampling.num_generations}")
    methods, names = _credit_methods(ia.credit)
    overrides = ia.objective_overrides
    mapping = overrides.as_dict() if hasattr(overrides, "as_dict") else dict(overrides or {})
    try:
        kl = get_preset(ia.objective, **ObjectiveOverrides.from_mapping(mapping).changes()).kl_coef > 0
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError("model.init_args.objective", str(err)) from err
    share = inspect.signature(VLLMRolloutEngine).parameters["gpu_memory_utilization"].default
    return Recipe(
        policy=_policy(ia.policy), credit=methods, credit_names=names,
        prompts=int(config.data.batch_size), G=int(sampling.num_generations),
        prompt_tokens=int(config.data.max_prompt_tokens), response_tokens=int(sampling.max_new_tokens),
        micro_batch_size=int(ia.micro_batch_size), share_prefix=bool(ia.share_prefix), kl=kl,
        engine=str(ia.rollout_engine), vllm_share=float(share), logprob_chunk=int(ia.logprob_chunk_size),
        probe_chunk=int(ia.attention_chunk_size), diagnostics_layer=ia.diagnostics_layer,
        devices=config.trainer.devices, strategy=str(config.trainer.strategy),
    )


def signal_request(recipe: Recipe, num_layers: int) -> SignalRequest:
    """The training forward's request: the credit methods' signals and loss signals plus the
    diagnostics layer's image attention (``RLVRModule.set_credit``).
    """
    credit = ComposedCredit(list(recipe.credit))
    diag = resolve_layers(recipe.diagnostics_layer, num_layers)[0]
    return (credit.signal_request(num_layers).union(SignalRequest(image_attention_layers=frozenset({diag})))
            .union(credit.loss_request(num_layers)))
