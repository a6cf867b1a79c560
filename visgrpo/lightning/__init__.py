"""Lightning modules, data module, callbacks and CLI of visgrpo.

The classes are imported lazily so that light submodules (batching, compose) do not pull
in transformers and the whole training stack.
"""

from importlib import import_module

_EXPORTS = {
    "EvidenceDataModule": "visgrpo.lightning.datamodule",
    "RLVRModule": "visgrpo.lightning.rlvr",
    "SFTModule": "visgrpo.lightning.sft",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'visgrpo.lightning' has no attribute {name!r}")
