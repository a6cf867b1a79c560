"""Each run's own directory and MLflow run name, the end-of-run summary, the effective config
on record, and what ``--help`` tells (visgrpo/lightning/cli.py, record.py; visgrpo/cli.py).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from jsonargparse import Namespace

from visgrpo.cli import main
from visgrpo.credit import CREDIT_METHODS, ComposedCredit, EASECredit
from visgrpo.lightning.cli import build_cli, run_layout
from visgrpo.lightning.record import effective_config, flat_params
from visgrpo.objectives import ObjectiveConfig, get_preset
from visgrpo.rollout import SamplingConfig

from .conftest import CONFIGS, tracking_args

SMOKE = str(CONFIGS / "experiment/tiny_smoke.yaml")


def config(credit=(), seed=3, root=None, experiment="visgrpo", model="visgrpo.lightning.RLVRModule") -> Namespace:
    logger = Namespace(class_path="lightning.pytorch.loggers.MLFlowLogger",
                       init_args=Namespace(experiment_name=experiment))
    args = Namespace(objective="dapo", credit=[Namespace(class_path=c) for c in credit], seed=seed)
    return Namespace(trainer=Namespace(default_root_dir=root, logger=logger),
                     model=Namespace(class_path=model, init_args=args), seed_everything=0)


def test_run_layout_names_experiment_method_and_seed():
    ease, atrl = (f"{c.__module__}.{c.__qualname__}" for c in map(CREDIT_METHODS.get, ("ease", "atrl")))
    assert run_layout(config()) == ("visgrpo", "visgrpo/dapo/seed3", "runs/visgrpo/dapo-seed3")
    assert run_layout(config([ease, atrl], seed=0, experiment="shapes_rl")) == (
        "shapes_rl", "shapes_rl/dapo+ease+atrl/seed0", "runs/shapes_rl/dapo+ease+atrl-seed0")
    assert run_layout(config(model="visgrpo.lightning.SFTModule"))[1] == "visgrpo/sft/seed3"
    # An explicit default_root_dir is the run's directory (scripts that lay out their own runs).
    assert run_layout(config(root="runs/mine/a"))[2] == "runs/mine/a"


def test_effective_config_holds_the_applied_preset_sampling_and_every_credit_setting():
    module = type("M", (), {})()
    module.objective = get_preset("dapo", kl_coef=0.001)
    module.sampling = SamplingConfig(max_new_tokens=24, stop_strings=["</answer>"])
    module.credit = ComposedCredit([EASECredit(lambda_attn=0.01)])
    cfg = effective_config(module)
    assert cfg["objective"] == dataclasses.asdict(module.objective)
    assert cfg["objective"]["eps_high"] == 0.28 and cfg["objective"]["kl_coef"] == 0.001  # preset + override
    assert cfg["sampling"]["stop_strings"] == ["</answer>"]
    (ease,) = cfg["credit"]
    assert ease == {"name": "ease", "class_path": "visgrpo.credit.ease.EASECredit", "lambda_attn": 0.01,
                    "layer": "two_thirds", "reward_threshold": 0.5, "max_tokens": 64, "direction": "forward",
                    "eps": 1e-8}
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg  # plain data
    params = flat_params(cfg)
    assert params["objective/eps_high"] == "0.28" and params["sampling/max_new_tokens"] == "24"
    assert params["credit/0_ease/lambda_attn"] == "0.01"
    assert len(params) == len(dataclasses.fields(ObjectiveConfig)) + len(dataclasses.fields(SamplingConfig)) + 7
    module.credit = ComposedCredit([])
    assert flat_params(effective_config(module))["credit/methods"] == "none"


def test_fit_help_lists_the_model_classes_and_every_credit_method(capsys):
    with pytest.raises(SystemExit):
        build_cli(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    known = re.search(r"any subclass of LightningModule\. \(type: [^)]*known subclasses: ([^)]*)\)", out).group(1)
    assert "visgrpo.lightning.RLVRModule" in known and "visgrpo.lightning.SFTModule" in known
    with pytest.raises(SystemExit):
        build_cli(["fit", "--model.help", "visgrpo.lightning.RLVRModule"])
    out = " ".join(capsys.readouterr().out.split())
    credit = out.split("--model.credit CREDIT", 1)[1].split("known subclasses:", 1)[1].split(")", 1)[0]
    for name in CREDIT_METHODS.names():
        cls = CREDIT_METHODS.get(name)
        assert cls.__qualname__ in credit, name


def test_every_objective_override_has_help_text_and_closed_sets_show_choices(capsys):
    with pytest.raises(SystemExit):
        build_cli(["fit", "--model.help", "visgrpo.lightning.RLVRModule"])
    out = capsys.readouterr().out
    for field in dataclasses.fields(ObjectiveConfig):
        m = re.search(rf"\n  --model\.objective_overrides\.{field.name} \S+\n(.*?)\(type:", out, re.S)
        assert m and m.group(1).strip(), f"objective_overrides.{field.name} has no help text"
    assert "--model.objective {dapo,dr_grpo,grpo,gspo,sapo}" in out
    # the engine registry is open (a user may register one): a name, its help naming the registry
    assert "--model.rollout_engine ROLLOUT_ENGINE" in out and "ROLLOUT_ENGINES" in out
    assert "Optional[Literal['dr_grpo', 'grpo']]" in out  # objective_overrides.advantage


def test_top_level_help_lists_the_subcommands_without_importing_the_training_stack():
    code = ("import sys; from visgrpo.cli import main; rc = main(['--help']); "
            "print(rc, sorted(m for m in ('torch', 'lightning', 'transformers', 'jsonargparse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=CONFIGS.parent, check=True).stdout
    assert out.rstrip().endswith("0 []"), out  # answered without torch/Lightning: well under 2 s
    for sub in ("fit", "validate", "test", "predict", "eval"):
        assert f"\n  {sub} " in out, sub


def test_gitignore_has_the_mlflow_lock():
    root = CONFIGS.parent
    if (root / ".git").exists():
        assert subprocess.run(["git", "check-ignore", "-q", "mlflow.db.lock"], cwd=root).returncode == 0
    assert "/mlflow.db.lock" in (root / ".gitignore").read_text().splitlines()


@pytest.mark.slow
def test_each_fit_gets_its_own_directory_name_summary_and_effective_config(in_workspace, capsys):
    quiet = [*tracking_args(in_workspace), "--trainer.enable_progress_bar=false", "--trainer.max_steps=1"]
    assert main(["fit", "--config", SMOKE, *quiet]) == 0
    assert main(["fit", "--config", SMOKE, "--config", str(CONFIGS / "credit/ease.yaml"), *quiet]) == 0
    dapo, ease = Path("runs/visgrpo/dapo-seed0"), Path("runs/visgrpo/dapo+ease-seed0")
    for run in (dapo, ease):
        assert (run / "checkpoints/last.ckpt").is_file() and (run / "export/model.safetensors").is_file()
    assert sorted(p.name for p in (dapo / "checkpoints").iterdir()) == ["last.ckpt"]
    out = capsys.readouterr().out
    summaries = [ln for ln in out.splitlines() if ln.startswith("visgrpo: run dir")]
    assert len(summaries) == 2 and summaries[1].startswith(
        f"visgrpo: run dir {ease}; checkpoint {ease / 'checkpoints/last.ckpt'}; export {ease / 'export'}; "
        "MLflow run 'visgrpo/dapo+ease/seed0' ("), summaries
    # validate --ckpt_path last of the first config loads its own checkpoint, not the newer one
    assert main(["validate", "--config", SMOKE, "--ckpt_path", "last", *quiet]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("visgrpo: run dir")][-1]
    assert f"loaded {dapo / 'checkpoints/last.ckpt'}" in line, line
    client = mlflow.tracking.MlflowClient(f"sqlite:///{Path.cwd()}/mlflow.db")
    exp = client.get_experiment_by_name("visgrpo")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert {"visgrpo/dapo/seed0", "visgrpo/dapo+ease/seed0"} <= set(runs)
    params = runs["visgrpo/dapo+ease/seed0"].data.params
    assert params["objective/eps_high"] == "0.28" and params["sampling/max_new_tokens"] == "24"
    assert params["credit/0_ease/reward_threshold"] == "0.5"
    run_id = runs["visgrpo/dapo+ease/seed0"].info.run_id
    assert {"config.yaml", "effective_config.yaml"} <= {a.path for a in client.list_artifacts(run_id)}
    written = yaml.safe_load((ease / "effective_config.yaml").read_text())
    assert written["credit"][0]["name"] == "ease" and written["objective"]["dynamic_sampling"] is True
