"""Third-party messages that are not the user's concern, silenced for ``visgrpo`` runs.

Each entry names what it silences and why it does not apply to visgrpo; anything else
(warnings about the user's data, config or hardware) is left alone.

* bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" (logged at
  import on CPUs with AVX512-BF16 when the optional ``kernels`` package is missing): QLoRA
  is meant for GPUs; the CPU fallback kernel works.
* Lightning's 13-line "Using ModelCheckpoint with manual optimization and
  every_n_train_steps" (every checkpoint, twice on resume): visgrpo's RL step does all of
  its optimiser steps inside ``training_step`` and checkpoints after them on purpose; the
  resume test pins that a resumed run equals an uninterrupted one.
* Lightning's litlogger advertisement (the "Tip" printed at every trainer start).
* Lightning's ``isinstance(treespec, LeafSpec)`` deprecation (Lightning's own code vs torch).
* MLflow's "Creating initial MLflow database tables" / "Updating database tables" INFO lines.

The "Epoch 0/-2" bar label is fixed by :class:`visgrpo.lightning.callbacks.StepProgressBar`.
"""

from __future__ import annotations

import logging
import warnings

#: Warning messages (regular expressions matched at the start) silenced for visgrpo runs.
SILENCED_WARNINGS = (
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
#: Log records dropped: logger name -> substrings of the message.
SILENCED_LOGS = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    "lightning.pytorch.utilities.rank_zero": ("litlogger",),
    "mlflow.store.db.utils": ("Creating initial MLflow database tables", "Updating database tables"),
}


class _DropMessages(logging.Filter):
    """Drops records whose message contains one of ``needles``."""

    def __init__(self, needles: tuple[str, ...]) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.needles)


def silence_third_party_noise() -> None:
    """Install the filters above (idempotent; before the libraries log)."""
    for pattern in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, needles in SILENCED_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(needles))
