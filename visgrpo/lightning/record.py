"""The config that ran, on record: the effective objective, sampling and credit settings.

MLflow gets the preset name and the overrides from the hyper-parameters; what the step
actually uses is the preset with the overrides applied (``ObjectiveConfig``), the sampling
config and each credit method with all of its settings (defaults included). They are logged
as params ``objective/<field>``, ``sampling/<field>``, ``credit/<k>_<name>/<setting>`` and as
one artifact ``effective_config.yaml`` (also written to ``<run dir>/effective_config.yaml``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from visgrpo.lightning.callbacks import mlflow_client

EFFECTIVE_CONFIG = "effective_config.yaml"
MAX_PARAM_CHARS = 500  # MLflow's limit is larger; long lists are kept readable and whole in the YAML


def _plain(value):
    """``value`` as YAML-safe plain data (tuples -> lists, sets -> sorted lists, others -> str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def effective_config(pl_module) -> dict:
    """``{objective, sampling, credit}`` of a training module as plain data (what ran)."""
    out: dict = {}
    objective = getattr(pl_module, "objective", None)
    if dataclasses.is_dataclass(objective):
        out["objective"] = _plain(dataclasses.asdict(objective))
    sampling = getattr(pl_module, "sampling", None)
    if dataclasses.is_dataclass(sampling):
        out["sampling"] = _plain(dataclasses.asdict(sampling))
    credit = getattr(pl_module, "credit", None)
    if credit is not None:
        out["credit"] = [
            {"name": m.name, "class_path": f"{type(m).__module__}.{type(m).__qualname__}", **_plain(m.settings())}
            for m in credit.methods
        ]
    return out


def flat_params(config: dict) -> dict[str, str]:
    """MLflow params of :func:`effective_config`: ``section/field`` (credit methods as
    ``credit/<k>_<name>/<setting>``, ``credit`` = ``none`` without any).
    """
    params: dict[str, str] = {}
    for section in ("objective", "sampling"):
        for k, v in config.get(section, {}).items():
            params[f"{section}/{k}"] = str(v)[:MAX_PARAM_CHARS]
    if "credit" in config:
        if not config["credit"]:
            params["credit/methods"] = "none"
        for k, method in enumerate(config["credit"]):
            for key, v in method.items():
                if key != "name":
                    params[f"credit/{k}_{method['name']}/{key}"] = str(v)[:MAX_PARAM_CHARS]
    return params


def log_effective_config(trainer, pl_module) -> Path | None:
    """Write ``<run dir>/effective_config.yaml`` and log it plus :func:`flat_params` to the
    trainer's MLflow run (rank zero; nothing for a module without these settings).
    """
    config = effective_config(pl_module)
    if not config or not trainer.is_global_zero:
        return None
    out = Path(trainer.default_root_dir) / EFFECTIVE_CONFIG
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(out)
    client, run_id = mlflow_client(trainer)
    if client is not None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=params[i:i + 100])
        client.log_artifact(run_id, str(out))
    return out
