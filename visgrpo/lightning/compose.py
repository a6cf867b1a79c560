"""What the CLI adds to jsonargparse's repeated ``--config``: experiment files that list their
parts, and callbacks that merge across files instead of being replaced.

jsonargparse (under LightningCLI) already composes repeated ``--config`` files: later files
and flags override earlier ones, key by key. This module only rewrites the command line
before jsonargparse sees it, so there is one set of merge rules (jsonargparse's) plus one
rule for ``trainer.callbacks``:

1. **Parts.** An experiment file may list its parts, paths relative to the file::

       defaults:
         - ../base.yaml
         - ../model/tiny_qwen2_5_vl.yaml
       trainer:
         max_steps: 2

   ``--config exp.yaml`` becomes ``--config ../base.yaml --config ../model/... --config
   '<the file's own keys as YAML>'`` (recursively; no temporary file: jsonargparse's
   ``--config`` takes YAML text too). jsonargparse's own nested ``config:`` key takes one
   file and then loses ``callbacks+:`` appends, hence this list.
2. **Callbacks merge by class.** A list replaces the earlier list in jsonargparse, so an
   experiment's ``callbacks:`` would silently drop base.yaml's checkpointing and export.
   Here a file's ``trainer.callbacks`` (or ``callbacks+``) entries merge into the earlier
   files' list: an entry whose class (last component of ``class_path``) is already there
   updates that entry's ``init_args`` key by key, in place; a new class is appended. An
   empty list (``callbacks: []``) is the one way to drop the earlier callbacks. The merged
   list is passed once more, as YAML, right after the last file that set callbacks; flags
   after it (``--trainer.callbacks+=...``) apply on top as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONFIG_FLAGS = ("--config", "-c")


def _load(path: Path, listed_in: Path | None = None) -> dict:
    if not path.is_file():
        where = f" (listed in {listed_in})" if listed_in else ""
        raise FileNotFoundError(f"config file {path} not found{where}")
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def expand_parts(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[str | dict]:
    """``path``'s ``defaults`` (recursively, in order) as file paths, then its own keys (a dict).

    A file without ``defaults`` is returned as ``[path]``.

    Raises:
        FileNotFoundError: a listed file is missing (named with the file that lists it).
        ValueError: a cycle in ``defaults``, or ``defaults`` not a list of paths.
    """
    path = Path(path)
    key = path.resolve()
    if key in map(Path.resolve, _seen):
        raise ValueError(f"config defaults cycle: {' -> '.join(map(str, (*_seen, path)))}")
    own = _load(path, _seen[-1] if _seen else None)
    if "defaults" not in own:
        return [str(path)]
    parts = own.pop("defaults")
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"{path}: defaults must be a list of config file paths, got {parts!r}")
    out: list[str | dict] = []
    for part in parts:
        out += expand_parts(os.path.normpath(path.parent / part), (*_seen, path))
    return out + ([own] if own else [])


def _callbacks(cfg: dict) -> list[dict] | None:
    """The ``trainer.callbacks`` (or ``callbacks+``) entries of one config, or None."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, dict):
        return None
    for key in ("callbacks", "callbacks+"):
        if key in trainer:
            value = trainer[key] or []
            value = value if isinstance(value, list) else [value]
            return [{"class_path": v} if isinstance(v, str) else v for v in value]
    return None


def merge_callbacks(earlier: list[dict], later: list[dict]) -> list[dict]:
    """``later``'s entries merged into ``earlier`` by class (see the module docstring)."""
    if not later:
        return []
    out = [dict(e, init_args=dict(e.get("init_args") or {})) for e in earlier]
    for entry in later:
        name = str(entry["class_path"]).rsplit(".", 1)[-1]
        same = [e for e in out if str(e["class_path"]).rsplit(".", 1)[-1] == name]
        if same:
            same[0]["init_args"].update(entry.get("init_args") or {})
        else:
            out.append(dict(entry, init_args=dict(entry.get("init_args") or {})))
    return [e if e["init_args"] else {"class_path": e["class_path"]} for e in out]


def _text_config(value: str) -> dict | None:
    """A ``--config`` value that is not a YAML file: YAML text (a dict) or None."""
    try:
        cfg = yaml.safe_load(value)
    except yaml.YAMLError:
        return None  # jsonargparse reports it
    return cfg if isinstance(cfg, dict) else None


def expand_config_args(argv: list[str]) -> list[str]:
    """The command line with parts expanded and callbacks merged (see the module docstring)."""
    out: list[str] = []
    merged: list[dict] | None = None
    setters, after_last = 0, 0  # configs that set callbacks; where the merged list goes
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        is_file = Path(value).suffix in (".yaml", ".yml") and Path(value).is_file()
        for part in expand_parts(value) if is_file else [value]:
            if isinstance(part, dict):
                cfg, part = part, yaml.safe_dump(part, sort_keys=False)
            else:
                cfg = _load(Path(part)) if is_file else _text_config(part)
            out += ["--config", part]
            callbacks = _callbacks(cfg) if cfg else None
            if callbacks is not None:
                merged = callbacks if merged is None else merge_callbacks(merged, callbacks)
                setters, after_last = setters + 1, len(out)
    if setters > 1:
        text = yaml.safe_dump({"trainer": {"callbacks": merged}}, sort_keys=False)
        out[after_last:after_last] = ["--config", text]
    return out
