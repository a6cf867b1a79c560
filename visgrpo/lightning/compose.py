"""Experiment composition for the Lightning CLI, with OmegaConf.

An experiment YAML under ``configs/experiment/`` is a short list of the other configs plus
its own overrides::

    defaults:
      - ../base.yaml
      - ../model/tiny_qwen2_5_vl.yaml
      - ../objective/dapo.yaml
    trainer:
      max_steps: 2

Files in ``defaults`` (paths relative to the file; they may have ``defaults`` themselves)
are merged in order with ``OmegaConf.merge``, then the file's own keys on top. Lists are
replaced, not concatenated, as in OmegaConf. ``visgrpo ... --config exp.yaml`` passes the
composed result to LightningCLI; further ``--config`` files and flags apply on top, as usual.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from omegaconf import OmegaConf


def compose(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Merge ``path`` with its ``defaults`` (recursively) into one plain dict.

    Raises:
        FileNotFoundError: a listed file is missing (named with the file that lists it).
        ValueError: a cycle in ``defaults``.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"config defaults cycle: {' -> '.join(map(str, (*_seen, path)))}")
    if not path.is_file():
        where = f" (listed in {_seen[-1]})" if _seen else ""
        raise FileNotFoundError(f"config file {path} not found{where}")
    own = OmegaConf.load(path)
    defaults = own.pop("defaults", []) if isinstance(own, dict) or OmegaConf.is_dict(own) else []
    parts = [OmegaConf.create(compose(path.parent / d, (*_seen, path))) for d in defaults]
    merged = OmegaConf.merge(*parts, own) if parts else own
    return OmegaConf.to_container(merged, resolve=False)


def expand_config_args(argv: list[str], tmp_dir: str | None = None) -> list[str]:
    """Replace every ``--config FILE`` whose file has ``defaults`` by a composed temporary file.

    The temporary directory (made only when needed) is removed when the process exits;
    ``tmp_dir`` puts the files in a directory of the caller's instead.
    """
    out: list[str] = []
    i = 0
    tmp_root: Path | None = Path(tmp_dir) if tmp_dir else None
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        path = Path(value)
        if path.suffix in (".yaml", ".yml") and path.is_file() and "defaults" in (OmegaConf.load(path) or {}):
            if tmp_root is None:
                tmp_root = Path(tempfile.mkdtemp(prefix="visgrpo-config-"))
                atexit.register(shutil.rmtree, tmp_root, ignore_errors=True)
            composed = tmp_root / f"{len(out)}_{path.name}"
            composed.write_text(OmegaConf.to_yaml(OmegaConf.create(compose(path))))
            value = str(composed)
        out += ["--config", value]
    return out
