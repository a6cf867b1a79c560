"""The shapes experiment's recipe: data and model settings, methods, and one RL run.

The numbers here are the experiment's definition (README: experiments/shapes/README.md):
the task (synthetic colour questions), the tiny model's size, the SFT budget that puts the
warm start between chance and the ceiling, and the RL budget shared by every method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from experiments.shapes.stages import CONFIGS, WARMSTART_DIR, DataSettings, Workdir, fit
from visgrpo.credit import CREDIT_METHODS

# Stage 0: the task (see experiments/shapes/README.md for why these settings).
DATA = DataSettings(
    num=4000, seed=0, question_types=("colour",), choice_fraction=0.0,
    min_objects=3, max_objects=4, size=112,
)
CROP_PIPELINE = "safe_crop,safe_crop"
# Tiny Qwen2.5-VL: the default build_tiny dimensions (text hidden 64, 4 layers, ~250K parameters).
MODEL_DIMS: dict = {}
MODEL_SEED = 0
# Stage 1: SFT warm start.
SFT_STEPS = 300
SFT_LR = 1.0e-3

RL_CONFIG = CONFIGS / "experiment" / "shapes_rl.yaml"
SFT_CONFIG = CONFIGS / "experiment" / "shapes_sft.yaml"
RL_EXPERIMENT = "shapes_rl"

# Stage 2: method -> configs composed on top of shapes_rl.yaml (objective, credit): DAPO
# alone, DAPO with each registered credit method (configs/credit/<name>.yaml), GRPO alone.
METHODS: dict[str, tuple[str, str]] = {
    "dapo": ("objective/dapo.yaml", "credit/none.yaml"),
    **{f"dapo+{name}": ("objective/dapo.yaml", f"credit/{name}.yaml") for name in CREDIT_METHODS if name != "none"},
    "grpo": ("objective/grpo.yaml", "credit/none.yaml"),
}


@dataclass(frozen=True)
class Budget:
    """RL budget shared by every method of a study."""

    steps: int
    val_every: int
    seeds: tuple[int, ...]
    limit_val: int | None = None


FULL = Budget(steps=100, val_every=20, seeds=(0, 1, 2))
DEMO = Budget(steps=100, val_every=20, seeds=(0,))
# The demo's EASE weight: the shipped 1e-3 leaves the held-out evidence ratio at EASE's layer
# where DAPO leaves it (~1.0); 0.1 moves it (issue 14's probe, experiments/mechanism).
DEMO_EASE_LAMBDA = 0.1


def ease_config(lambda_attn: float) -> str:
    """A ``--config`` (YAML text) replacing the credit list by EASE with ``lambda_attn``."""
    return json.dumps({"model": {"init_args": {"credit": [
        {"class_path": "visgrpo.credit.ease.EASECredit", "init_args": {"lambda_attn": lambda_attn}}]}}})


def run_name(method: str, seed: int) -> str:
    return f"{method}_s{seed}"


def _common(work: Workdir, study: str, method: str, seed: int, root: str, warmstart: Path) -> list[str]:
    tags = {"study": study, "method": method, "seed": str(seed)}
    return [
        f"--seed_everything={seed}",
        f"--model.init_args.seed={seed}",
        f"--model.init_args.policy.name_or_path={warmstart}",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.experiment_name={RL_EXPERIMENT}",
        f"--trainer.logger.init_args.tracking_uri={work.tracking_uri}",
        f"--trainer.logger.init_args.run_name={run_name(method, seed)}",
        f"--trainer.logger.init_args.tags={json.dumps(tags)}",
    ]


def rl_run(work: Workdir, study: str, method: str, seed: int, budget: Budget,
           warmstart: Path = WARMSTART_DIR, threads: int | None = None, log: Path | None = None,
           extra: list[str] = (), configs: list[str] = ()) -> float:
    """One RL run of ``method`` from the warm start; returns its wall time (s).

    ``extra``: further ``--key=value`` CLI arguments (e.g. a smaller batch in tests);
    ``configs``: further ``--config`` files or YAML texts after the method's (e.g.
    :func:`ease_config`).
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    root = f"runs/shapes_{study}/{run_name(method, seed)}"
    overrides = _common(work, study, method, seed, root, warmstart) + [
        f"--trainer.max_steps={budget.steps}",
        f"--trainer.val_check_interval={budget.val_every}",
    ]
    if budget.limit_val:
        overrides.append(f"--data.limit_val={budget.limit_val}")
    files = [RL_CONFIG, *(CONFIGS / c for c in METHODS[method]), *configs]
    return fit(work, files, overrides + list(extra), log=log, threads=threads)


def validate_warmstart(work: Workdir, study: str, budget: Budget, warmstart: Path = WARMSTART_DIR,
                       threads: int | None = None, log: Path | None = None, extra: list[str] = ()) -> float:
    """Validation of the starting checkpoint (greedy, deterministic), tagged ``method=warmstart``."""
    root = f"runs/shapes_{study}/warmstart"
    overrides = _common(work, study, "warmstart", 0, root, warmstart)
    if budget.limit_val:
        overrides.append(f"--data.limit_val={budget.limit_val}")
    return fit(work, [RL_CONFIG], overrides + list(extra), log=log, threads=threads, subcommand="validate")
