"""The mechanism study's definition: run configurations, budgets and one resumable run.

A configuration is an objective plus a list of credit methods with their settings (written
to a generated YAML composed on top of ``configs/experiment/shapes_rl.yaml``). Every
(configuration, seed) run writes ``<results>/runs/<config>_s<seed>.json`` atomically once it
has finished; a run whose file exists is skipped, so the study resumes after an interruption.
The same seed gives the same prompts in every configuration (paired seeds).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments.shapes import recipe
from experiments.shapes.stages import WARMSTART_DIR, Workdir, fit, write_json

EXPERIMENT = "mechanism"
EASE_DOSES = (1e-3, 1e-2, 1e-1, 1.0)  # + 0 = the dapo run (lambda 0 leaves DAPO's gradient unchanged)
SAYO_DOSES = (0.3, 1.0, 3.0)  # + 0 = the dapo run (weight 0 adds nothing to the reward)
OVERLAY_SEED = 0
OVERLAY_LAYERS = ("two_thirds", "last")  # EASE's layer and SAYO's, drawn for every arm (same images)

EASE = "visgrpo.credit.ease.EASECredit"
SAYO = "visgrpo.credit.sayo.SAYOCredit"
VGPO = "visgrpo.credit.vgpo.VGPOCredit"
ATRL = "visgrpo.credit.atrl.ATRLCredit"
VPPO = "visgrpo.credit.vppo.VPPOCredit"
PAPO = "visgrpo.credit.papo.PAPOCredit"
NO_IMAGE = "visgrpo.lightning.no_image.NoImageValidation"


@dataclass(frozen=True)
class RunConfig:
    """One arm of the study: ``objective`` preset plus ``credit`` (class path, init args)."""

    name: str
    objective: str = "dapo"
    credit: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    group: str = "comparison"  # "ease_dose", "sayo_dose" or "comparison"
    dose: float | None = None

    def credit_yaml(self) -> dict:
        return {"model": {"init_args": {"objective": self.objective, "credit": [
            {"class_path": cls, "init_args": dict(args)} for cls, args in self.credit]}},
            # no checkpoint, export or overlays (the result is the metrics); val/accuracy_no_image
            "trainer": {"callbacks": [{"class_path": NO_IMAGE}]}}


def _dose_name(prefix: str, x: float) -> str:
    return f"{prefix}{x:g}"


def configurations() -> dict[str, RunConfig]:
    """Every arm, in the order they run: the EASE dose-response first (the issue's probe
    says it moves its target), then SAYO's, then the comparison of the registry's methods.
    """
    arms = [RunConfig("dapo", group="baseline", dose=0.0)]
    arms += [RunConfig(_dose_name("ease_lambda", x), credit=((EASE, (("lambda_attn", x),)),), group="ease_dose", dose=x)
             for x in EASE_DOSES]
    arms += [RunConfig(_dose_name("sayo_weight", x), credit=((SAYO, (("reward_weight", x),)),), group="sayo_dose",
                       dose=x)
             for x in SAYO_DOSES]
    arms += [
        RunConfig("dapo+vgpo", credit=((VGPO, ()),)),
        RunConfig("dapo+atrl", credit=((ATRL, ()),)),
        RunConfig("dapo+ease+atrl", credit=((EASE, (("lambda_attn", 0.1),)), (ATRL, ()))),
        RunConfig("grpo", objective="grpo"),
        RunConfig("dapo+vppo", credit=((VPPO, ()),)),
        RunConfig("dapo+papo", credit=((PAPO, ()),)),
    ]
    return {a.name: a for a in arms}


@dataclass(frozen=True)
class StudyBudget:
    """Steps, seeds and validation of every arm (the same for all: paired comparison)."""

    steps: int
    seeds: tuple[int, ...]
    limit_val: int = 200
    val_every: int | None = None  # None: validate once, at the end

    def overrides(self) -> list[str]:
        return [f"--trainer.max_steps={self.steps}", f"--trainer.val_check_interval={self.val_every or self.steps}",
                f"--data.limit_val={self.limit_val}"]


FULL = StudyBudget(steps=100, seeds=(0, 1, 2, 3, 4))
QUICK = StudyBudget(steps=60, seeds=(0, 1, 2), limit_val=200)
# The relational testbed: ~90-token reasoning chains make a step ~10x a shapes step, so fewer
# steps and held-out prompts; its arms are the four methods (EASE at lambda 0.1, the dose of
# dapo+ease+atrl, +1.13 evidence ratio on shapes; SAYO at its shipped weight) and EASE + AT-RL.
RELATIONAL = StudyBudget(steps=30, seeds=(0, 1, 2, 3, 4), limit_val=100)
RELATIONAL_ARMS = ("dapo", "dapo+vgpo", "dapo+atrl", "ease_lambda0.1", "sayo_weight1", "dapo+ease+atrl")
# The learning testbed (experiments/learning): DAPO learns there (the precondition), so the
# credit comparison runs there: every registered method at its shipped setting, EASE also at
# the dose with the best accuracy in the shapes dose-response (1e-2). AT-RL is left out: with
# 6-token answers every response is one cluster and every weight is exactly 1 (shapes study).
LEARNING = StudyBudget(steps=30, seeds=(0, 1, 2, 3, 4), limit_val=200, val_every=10)
LEARNING_ARMS = ("dapo", "ease_lambda0.001", "ease_lambda0.01", "sayo_weight1", "dapo+vgpo", "dapo+vppo", "dapo+papo")
PRIOR_ARMS = LEARNING_ARMS  # the language-prior testbed (experiments/shapes/prior_testbed.py)


@dataclass
class Study:
    """Paths of one study: MLflow store and runs under ``work``, results under ``results``."""

    work: Workdir
    results: Path
    threads: int = 1
    warmstart: Path = WARMSTART_DIR
    extra: list[str] = field(default_factory=list)
    experiment: str = EXPERIMENT  # MLflow experiment and runs/<experiment>/ (one per testbed)

    def run_overrides(self, name: str) -> list[str]:
        """Where run ``name`` goes: its root directory and its MLflow experiment and run name."""
        return [f"--trainer.default_root_dir=runs/{self.experiment}/{name}",
                f"--trainer.logger.init_args.experiment_name={self.experiment}",
                f"--trainer.logger.init_args.tracking_uri={self.work.tracking_uri}",
                f"--trainer.logger.init_args.run_name={name}", "--trainer.enable_progress_bar=false"]

    def result_path(self, config: str, seed: int) -> Path:
        return self.results / "runs" / f"{config}_s{seed}.json"

    def config_file(self, cfg: RunConfig) -> Path:
        path = self.work.root / "runs" / self.experiment / "configs" / f"{cfg.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # runs of one arm write it concurrently
        tmp.write_text(yaml.safe_dump(cfg.credit_yaml(), sort_keys=False))
        tmp.replace(path)
        return path


PREFIXES = ("val/", "reward/", "ease/", "sayo/", "vgpo/", "atrl/", "vppo/", "papo/", "dapo/", "policy/entropy",
            "rollout/response_length")
CURVES = ("reward/first_round/accuracy", "reward/filtered/accuracy", "val/accuracy", "val/accuracy_no_image")


def final_metrics(tracking_uri: str, run_name: str, experiment: str = EXPERIMENT, histories: bool = False) -> dict:
    """The last value of every study metric (:data:`PREFIXES`) of the newest finished MLflow
    run ``run_name``; with ``histories``, ``{"final": ..., "run_mean": ..., "curves": ...}``:
    the last values, the mean over the run's steps of every training metric (issue 22: a
    last step alone misreads a noisy run) and the ``[[step, value], ...]`` histories of
    :data:`CURVES` (learning curves and steps-to-reach, recomputable from the JSON).
    """
    from experiments.shapes.runs import client_for

    client = client_for(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id],
                              f"tags.mlflow.runName = '{run_name}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise RuntimeError(f"no finished MLflow run named {run_name!r} in experiment {experiment!r}")
    run = runs[0]
    final = {k: float(v) for k, v in run.data.metrics.items() if k.startswith(PREFIXES)} | {
        "mlflow_run_id": run.info.run_id}
    if not histories:
        return final
    means, curves = {}, {}
    for key in final:
        if key == "mlflow_run_id" or (key.startswith("val/") and key not in CURVES):
            continue
        hist = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        if not key.startswith("val/"):
            means[key] = float(sum(m.value for m in hist) / len(hist))
        if key in CURVES:
            curves[key] = [[int(m.step), float(m.value)] for m in hist]
    return {"final": final, "run_mean": means, "curves": curves}


def run_one(study: Study, cfg: RunConfig, seed: int, budget: StudyBudget, log: Path | None = None) -> dict | None:
    """Run ``cfg`` with ``seed`` unless its result exists; returns the result (None if skipped)."""
    out = study.result_path(cfg.name, seed)
    if out.exists():
        return None
    name = f"{cfg.name}_s{seed}"
    tags = {"study": study.experiment, "config": cfg.name, "seed": str(seed)}
    overrides = [
        f"--seed_everything={seed}", f"--model.init_args.seed={seed}",
        f"--model.init_args.policy.name_or_path={study.warmstart}", *study.run_overrides(name),
        f"--trainer.logger.init_args.tags={json.dumps(tags)}", *budget.overrides(), *study.extra,
    ]
    if seed == OVERLAY_SEED:  # attention overlays before and after training, at EASE's and SAYO's layers
        overrides += ["--trainer.callbacks+=visgrpo.lightning.callbacks.AttentionOverlay",
                      "--trainer.callbacks.every_n_steps=1000000", "--trainer.callbacks.num_images=2",
                      f"--trainer.callbacks.layer={json.dumps(list(OVERLAY_LAYERS))}",
                      f"--trainer.callbacks.out_dir={study.results / 'overlays' / cfg.name}"]
    t0 = time.time()
    fit(study.work, [recipe.RL_CONFIG, study.config_file(cfg)], overrides, log=log, threads=study.threads)
    result = {"config": cfg.name, "group": cfg.group, "dose": cfg.dose, "objective": cfg.objective, "seed": seed,
              "steps": budget.steps, "limit_val": budget.limit_val, "seconds": round(time.time() - t0, 1),
              **final_metrics(study.work.tracking_uri, name, study.experiment, histories=True)}
    write_json(out, result)
    return result


def warmstart_result(study: Study, budget: StudyBudget, log: Path | None = None) -> dict:
    """Validation of the starting checkpoint (step 0 of every arm), cached like a run."""
    out = study.result_path("warmstart", 0)
    if out.exists():
        return json.loads(out.read_text())
    overrides = [
        "--seed_everything=0", f"--model.init_args.policy.name_or_path={study.warmstart}",
        *study.run_overrides("warmstart"), f"--data.limit_val={budget.limit_val}", *study.extra,
    ]
    fit(study.work, [recipe.RL_CONFIG, study.config_file(configurations()["dapo"])], overrides, log=log,
        threads=study.threads,
        subcommand="validate")
    result = {"config": "warmstart", "group": "warmstart", "seed": 0, "limit_val": budget.limit_val,
              "final": final_metrics(study.work.tracking_uri, "warmstart", study.experiment)}
    write_json(out, result)
    return result
