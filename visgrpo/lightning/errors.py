"""User errors of ``visgrpo fit|validate|test``: one line naming the config key or file.

A :class:`ConfigError` (or one of the other user-error types below, raised by the lower
layers) is printed by ``visgrpo.cli.main`` as a single ``error: ...`` line with exit code 2;
``--debug`` or ``VISGRPO_DEBUG=1`` shows the full traceback instead. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from difflib import get_close_matches
from importlib import import_module
from pathlib import Path

import yaml

from visgrpo.data.images import BadRecord
from visgrpo.data.schema import FingerprintMismatch
from visgrpo.models.loading import ModelNotFound


class ConfigError(ValueError):
    """A bad config value or input file.

    Args:
        key: the config key (``model.init_args.learning_rate``) or file the message is about.
        message: what is wrong, and what is expected.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class UnsafeCheckpoint(ConfigError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses (it would run code)."""


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FingerprintMismatch, ModelNotFound, BadRecord)


def find_user_error(exc: BaseException) -> BaseException | None:
    """The user error in ``exc``'s chain (``__cause__`` / ``__context__``), if any.

    jsonargparse wraps errors raised while it instantiates classes (``Does not validate
    against any of the Union subtypes``); the user error is then one of the causes.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, USER_ERRORS):
            return e
        todo += [e.__cause__, e.__context__]
    return None


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` ``key: message`` unless ``condition``."""
    if not condition:
        raise ConfigError(key, message)


#: The dataset splits each subcommand reads: subcommand -> ((config key, required), ...).
SPLITS_READ = {
    "fit": (("train_path", True), ("val_path", False)),
    "validate": (("val_path", True),),
    "test": (("test_path", True),),
}


def check_split_paths(subcommand: str, train_path: str | None, val_path: str | None, test_path: str | None) -> None:
    """Refuse, before any model loads, a split the subcommand needs that is not set, or a
    set one that is not a directory (:class:`ConfigError` naming ``data.<split>_path``).
    """
    paths = {"train_path": train_path, "val_path": val_path, "test_path": test_path}
    for key, required in SPLITS_READ.get(subcommand, ()):
        path = paths[key]
        if path is None:
            if required:
                raise ConfigError(f"data.{key}", f"`visgrpo {subcommand}` needs this split; set it to a dataset "
                                  "directory (`visgrpo-data synth|convert` and `masks` build one)")
        elif not Path(path).is_dir():
            raise ConfigError(f"data.{key}", f"{path}: no such dataset directory; build it with "
                              "`visgrpo-data synth|convert` and `masks`")


def check_length_norm(objective, sampling) -> None:
    """Dr.GRPO's constant ``L_max`` (``objective.max_response_length``, the divisor of
    seq_mean_token_sum_norm when ``loss_length_norm`` is unset) must be at least the
    generation cap ``sampling.max_new_tokens``, or a response could weigh more than a full one.
    """
    if objective.aggregation != "seq_mean_token_sum_norm" or objective.loss_length_norm is not None:
        return
    require(objective.max_response_length >= sampling.max_new_tokens,
            "model.init_args.objective_overrides.max_response_length",
            f"{objective.max_response_length} is below the generation cap model.init_args.sampling.max_new_tokens="
            f"{sampling.max_new_tokens}; Dr.GRPO's L_max must be at least the longest response")


def check_hyperparameters(**values: float | int) -> None:
    """Refuse bad optimisation hyper-parameters (before any model is loaded).

    ``values`` maps the ``model.init_args`` name to its value; each name has one rule:
    ``learning_rate > 0``; ``weight_decay``, ``warmup_steps``, ``max_grad_norm >= 0``;
    ``micro_batch_size``, ``mini_batch_size``, ``ppo_epochs``, ``logprob_chunk_size``,
    ``attention_chunk_size >= 1``.
    """
    for name, value in values.items():
        key = f"model.init_args.{name}"
        if name == "learning_rate":
            require(value > 0, key, f"must be > 0, got {value}")
        elif name in ("weight_decay", "warmup_steps", "max_grad_norm"):
            require(value >= 0, key, f"must be >= 0, got {value}")
        elif name in ("micro_batch_size", "mini_batch_size", "ppo_epochs", "logprob_chunk_size",
                      "attention_chunk_size"):
            require(value >= 1, key, f"must be >= 1, got {value}")
        else:
            raise KeyError(f"no rule for hyper-parameter {name!r}")


# ----------------------------------------------------------------- parser errors
#: Top-level config groups that are one class (a misspelt key is looked up among its arguments).
GROUP_CLASSES = {"trainer": "lightning.pytorch.Trainer", "data": "visgrpo.lightning.datamodule.EvidenceDataModule"}
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
          "- Expected a <class 'NoneType'>")


def parser_error_line(err: BaseException, args: list[str] | None = None) -> str:
    """The useful part of a jsonargparse error: the key and the innermost reason, one line
    (a class's Union wrapper, the subtype list and the echoed value are dropped). A misspelt
    key gets the closest valid one (``did you mean``) and the config file that set it
    (``args``: the command line as the user gave it).
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    detail = [ln.removeprefix("- ") for ln in lines[1:] if not ln.startswith(_NOISE)]
    line = " ".join([lines[0], *detail[:4]])
    unknown = unknown_key(str(err))
    if unknown is not None:
        key, suggestion = unknown
        if suggestion:
            line += f"; did you mean {suggestion!r}?"
        where = key_source(key, args or [])
        if where:
            line += f" ({key} is set {where})"
    return line


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def _options(cls) -> list[str]:
    """The keys a config may give ``cls``: dataclass fields or ``__init__`` arguments."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _argument_class(cls, name: str):
    """The class of ``cls``'s argument ``name`` (``X | None`` -> ``X``), or None."""
    try:
        hint = typing.get_type_hints(cls.__init__).get(name)
    except Exception:  # noqa: BLE001 -- unresolvable annotations: no suggestion
        return None
    for tp in (hint, *typing.get_args(hint)):
        if isinstance(tp, type) and tp is not type(None):
            return tp
    return None


def unknown_key(message: str) -> tuple[str, str | None] | None:
    """``(dotted key, closest valid key or None)`` of an "unknown option" parser error, else None."""
    keys: list[str] = []
    cls = None
    for ln in message.splitlines():
        if m := re.search(r'Parser key "([^"]+)"', ln):
            keys.append(m[1])
        elif m := re.search(r"class_path '([^']+)'", ln):
            cls = _import_or_none(m[1])
            if keys == ["model"]:
                keys.append("init_args")
        elif m := re.search(r"Subcommand '[^']+' does not accept option '([^']+)'", ln):
            *groups, option = m[1].split(".")
            cls = _import_or_none(GROUP_CLASSES.get(groups[0], "")) if len(groups) == 1 else None
            keys += [*groups, option]
            break
        elif m := re.search(r"Group '([^']+)' does not accept option '([^']+)'", ln):
            group, option = m[1], m[2]
            if cls is None:
                cls = _import_or_none(GROUP_CLASSES.get(group, ""))
            else:
                cls = _argument_class(cls, group)
            keys += [group, option]
            break
        elif m := re.search(r"Option '([^']+)' is not accepted", ln):
            keys.append(m[1])
            break
    else:
        return None
    close = get_close_matches(keys[-1], _options(cls), n=1, cutoff=0.6) if cls is not None else []
    return ".".join(keys), (close[0] if close else None)


def _import_or_none(path: str):
    try:
        return _import(path) if "." in path else None
    except (ImportError, AttributeError):
        return None


def _config_files(value: str, seen: tuple[Path, ...] = ()) -> list[Path]:
    """A ``--config`` file and the files its ``defaults:`` list, in order."""
    path = Path(value)
    if path.suffix not in (".yaml", ".yml") or not path.is_file() or path.resolve() in seen:
        return []
    data = yaml.safe_load(path.read_text()) or {}
    parts = data.get("defaults", []) if isinstance(data, dict) else []
    out = [f for p in parts if isinstance(p, str) for f in _config_files(str(path.parent / p), (*seen, path.resolve()))]
    return [*out, path]


def _has_key(data, dotted: list[str]) -> bool:
    """``data`` holds the nested key ``dotted`` (``init_args`` levels optional)."""
    if not dotted:
        return True
    if not isinstance(data, dict):
        return False
    head, rest = dotted[0], dotted[1:]
    return (head in data and _has_key(data[head], rest)) or (head == "init_args" and _has_key(data, rest))


def key_source(key: str, args: list[str]) -> str | None:
    """Where ``key`` was given: ``"in <file>"`` (the last ``--config`` file, or a file its
    ``defaults:`` lists, that has it), ``"on the command line"``, or None.
    """
    dotted = key.split(".")
    if any(a.startswith("--") and key.split(".")[-1] in a.split("=")[0] for a in args):
        return "on the command line"
    files = [f for i, a in enumerate(args[:-1]) if a in ("--config", "-c") for f in _config_files(args[i + 1])]
    files += [f for a in args if a.startswith("--config=") for f in _config_files(a.split("=", 1)[1])]
    hits = [f for f in files if _has_key(yaml.safe_load(f.read_text()), dotted)]
    return f"in {hits[-1]}" if hits else None
