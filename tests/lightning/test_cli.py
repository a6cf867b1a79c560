"""The Lightning CLI and configs/: every YAML composes into a complete config
(``--print_config``, nothing instantiated), links and errors.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import yaml

from visgrpo.cli import main
from visgrpo.credit import CREDIT_METHODS
from visgrpo.lightning.cli import build_cli
from visgrpo.objectives import ObjectiveConfig

from .conftest import CONFIGS

OBJECTIVES = sorted(p.stem for p in (CONFIGS / "objective").glob("*.yaml"))
CREDITS = sorted(p.stem for p in (CONFIGS / "credit").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))


#: Configs holding one method's settings for another base objective: config -> method.
VARIANTS = {"papo_grpo": "papo"}


def credit_classes(config: str) -> list[str]:
    """Class paths expected in ``configs/credit/<config>.yaml``: the registered method of
    that name (or of the variant, :data:`VARIANTS`), or registered methods joined by ``_``
    (``ease_atrl``); ``none``: none.
    """
    config = VARIANTS.get(config, config)
    names = [config] if config in CREDIT_METHODS else config.split("_")
    classes = [CREDIT_METHODS.get(n) for n in names if n != "none"]
    return [f"{c.__module__}.{c.__qualname__}" for c in classes]


def printed_config(capsys, *configs: str, extra: tuple[str, ...] = ()) -> dict:
    args = ["fit"]
    for c in configs:
        args += ["--config", str(CONFIGS / f"{c}.yaml")]
    with pytest.raises(SystemExit) as e:
        build_cli([*args, *extra, "--print_config"])  # prints and exits before instantiating
    assert e.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_config_hub_is_complete():
    assert OBJECTIVES == ["dapo", "dr_grpo", "grpo", "gspo", "sapo"]
    assert set(CREDITS) >= set(CREDIT_METHODS) >= {"none", "sayo", "vgpo", "atrl", "ease"}
    for fam in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        assert f"tiny_{fam}" in MODELS


@pytest.mark.parametrize(("objective", "credit"), list(itertools.product(OBJECTIVES, CREDITS)))
def test_experiment_composes_with_every_objective_and_credit(capsys, objective, credit):
    cfg = printed_config(capsys, "experiment/tiny_smoke", f"objective/{objective}", f"credit/{credit}")
    model = cfg["model"]
    assert model["class_path"] == "visgrpo.lightning.RLVRModule"
    assert model["init_args"]["objective"] == objective
    assert [c["class_path"] for c in model["init_args"]["credit"]] == credit_classes(credit)
    # The experiment's own settings survive the later files; base.yaml's trainer/logger are there.
    overrides = {k: v for k, v in model["init_args"]["objective_overrides"].items() if v is not None}
    assert overrides == {"max_sampling_tries": 2}
    assert cfg["trainer"]["max_steps"] == 2
    assert cfg["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.MLFlowLogger"
    assert cfg["data"]["train_path"] == "artifacts/shapes/train"


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_composes(capsys, model):
    cfg = printed_config(capsys, "base", f"model/{model}", "data/shapes", "objective/dapo", "credit/none")
    policy = cfg["model"]["init_args"]["policy"]
    assert policy["trust_remote_code"] is False
    if model.startswith("tiny_"):
        assert policy["name_or_path"] == "tiny:" + model.removeprefix("tiny_")  # built on first use
        assert policy["lora"] is None
    else:  # released checkpoints by hub id, with LoRA (and QLoRA: 4-bit nf4)
        assert policy["name_or_path"].startswith("Qwen/")
        assert policy["lora"]["r"] > 0
        assert policy["quantization"] == ("nf4" if model.endswith("qlora") else None)


def test_credit_composition_by_repeated_config(capsys):
    cfg = printed_config(capsys, "experiment/tiny_smoke", "credit/ease_atrl")
    ease, atrl = cfg["model"]["init_args"]["credit"]
    assert ease["init_args"]["lambda_attn"] == 1e-3  # the paper's defaults, from the classes
    assert atrl["init_args"]["anchor_frac"] == 0.15


def test_later_config_file_overrides_earlier(capsys, tmp_path):
    override = tmp_path / "mine.yaml"
    override.write_text("model:\n  init_args:\n    learning_rate: 3.0e-5\ntrainer:\n  max_steps: 7\n")
    cfg = printed_config(capsys, "experiment/tiny_smoke", "credit/sayo", extra=("--config", str(override)))
    assert cfg["model"]["init_args"]["learning_rate"] == 3e-5
    assert cfg["trainer"]["max_steps"] == 7
    assert cfg["model"]["init_args"]["credit"][0]["init_args"]["rho"] == 0.3


def test_bad_value_fails_at_parse_naming_the_key(capsys):
    # (visgrpo.cli.main turns the parser's error into one line, exit code 2)
    assert main(["fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"),
                 "--model.init_args.micro_batch_size", "many"]) == 2
    assert "micro_batch_size" in capsys.readouterr().err


def test_help_lists_the_objective_overrides(capsys):
    with pytest.raises(SystemExit):
        build_cli(["fit", "--model.help", "visgrpo.lightning.RLVRModule"])
    out = capsys.readouterr().out
    for field in dataclasses.fields(ObjectiveConfig):
        assert f"--model.objective_overrides.{field.name} " in out, field.name


def test_unknown_objective_override_is_refused_naming_the_key(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    objective_overrides: {kl_coeff: 0.1}\n")
    assert main(["fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"), "--config", str(bad),
                 "--print_config"]) == 2
    assert "does not accept option 'kl_coeff'" in capsys.readouterr().err


def test_unknown_objective_lists_valid_presets(capsys):
    # A closed set (the registered presets) is a choice: refused at parse, before anything loads.
    assert main(["fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"),
                 "--model.init_args.objective", "ppo2", "--print_config"]) == 2
    err = capsys.readouterr().err
    assert "Expected a typing.Literal['dapo', 'dr_grpo', 'grpo', 'gspo', 'sapo']. Got value: ppo2" in err, err


def test_model_path_and_seed_are_linked_into_the_data_module(in_workspace):
    cli = build_cli(["--config", str(CONFIGS / "experiment/tiny_smoke.yaml"),
                     "--model.init_args.seed", "7"], run=False)
    assert cli.datamodule.hparams.model_path == "tiny:qwen2_5_vl"
    assert cli.datamodule.hparams.seed == 7
    assert cli.model.hparams.seed == 7
