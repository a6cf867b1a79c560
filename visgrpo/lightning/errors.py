"""User errors of ``visgrpo fit|validate|test``: one line naming the config key or file.

A :class:`ConfigError` (or one of the other user-error types below, raised by the lower
layers) is printed by ``visgrpo.cli.main`` as a single ``error: ...`` line with exit code 2;
``--debug`` or ``VISGRPO_DEBUG=1`` shows the full traceback instead. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

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


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FingerprintMismatch, ModelNotFound)


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
        elif name in ("micro_batch_size", "mini_batch_size", "ppo_epochs", "logprob_chunk_size", "attention_chunk_size"):
            require(value >= 1, key, f"must be >= 1, got {value}")
        else:
            raise KeyError(f"no rule for hyper-parameter {name!r}")
