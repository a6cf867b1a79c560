"""User errors of ``visgrpo fit|validate|test``: one line ``error: ...`` naming the config key
or file, exit code 2, no traceback; ``--debug`` / ``VISGRPO_DEBUG=1`` give the traceback;
bugs keep theirs (visgrpo/cli.py, visgrpo/lightning/errors.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import huggingface_hub
import pytest

import visgrpo.cli
import visgrpo.lightning.base
from data_tools.cli import main as data_main
from visgrpo.cli import main
from visgrpo.lightning.errors import check_hyperparameters

from .conftest import CONFIGS, tracking_args

SMOKE = str(CONFIGS / "experiment/tiny_smoke.yaml")


def one_error_line(capsys, args: list[str], subcommand: str = "fit", config: str = SMOKE) -> str:
    """Run ``visgrpo SUBCOMMAND --config CONFIG ARGS``; the one ``error:`` line it printed."""
    code = main([subcommand, "--config", config, *args])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err[-2000:]
    assert errors[0].endswith("(--debug for the traceback)")
    return errors[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading the policy fails the test: the error must come before it."""
    def refuse(cfg):
        raise AssertionError("the policy was loaded")
    monkeypatch.setattr(visgrpo.lightning.base, "load_policy", refuse)


def test_fingerprint_mismatch(in_workspace, workspace, capsys):
    # The README's `--processor qwen2_5_vl` (the released processor) for the tiny model: the
    # refusal names the exact --processor to rebuild the masks with.
    other = in_workspace / "other"
    assert data_main(["masks", "--dataset", str(workspace / "raw"), "--processor", "qwen2_5_vl",
                      "--out", str(other), "--no-progress"]) == 0
    line = one_error_line(capsys, [*tracking_args(in_workspace), "--data.train_path", str(other / "train")])
    assert line.startswith(f"error: data.train_path: {other / 'train'}: evidence masks were built for another "
                           "processor (max_pixels: dataset=")
    assert "rebuild them with `visgrpo-data masks --processor tiny:qwen2_5_vl`" in line


def test_missing_dataset_before_the_model_loads(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, [*tracking_args(in_workspace), "--data.train_path", "nope/train"])
    assert line.startswith("error: data.train_path: nope/train: no such dataset directory")


def test_missing_validation_set_in_validate(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, [*tracking_args(in_workspace), "--data.val_path", "nope/val"], "validate")
    assert line.startswith("error: data.val_path: nope/val: no such dataset directory")


def test_test_without_a_test_split_fails_clearly(in_workspace, capsys, no_model_load):
    # (it used to exit 0 having done nothing)
    line = one_error_line(capsys, [*tracking_args(in_workspace)], "test")
    assert line.startswith("error: data.test_path: `visgrpo test` needs this split")


def test_datamodule_test_loader_without_a_test_split_refuses():
    from visgrpo.lightning.datamodule import EvidenceDataModule
    from visgrpo.lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="data.test_path"):
        EvidenceDataModule("unused").test_dataloader()


def test_data_without_masks(in_workspace, workspace, capsys):
    raw = workspace / "raw" / "train"
    line = one_error_line(capsys, [*tracking_args(in_workspace), "--data.train_path", str(raw)])
    assert line.startswith(f"error: data.train_path: {raw}: no processor fingerprint; run `visgrpo-data masks "
                           "--processor tiny:qwen2_5_vl`")


def test_unknown_key_and_bad_value(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, ["--model.init_args.learning_rat=1"])
    assert line.startswith('error: Parser key "model": Problem with given class_path '
                           "'visgrpo.lightning.RLVRModule': Option 'learning_rat' is not accepted")
    assert "did you mean 'learning_rate'? (model.init_args.learning_rat is set on the command line)" in line
    line = one_error_line(capsys, ["--trainer.max_steps=abc"])
    assert line.startswith('error: Parser key "trainer.max_steps": Expected a <class \'int\'>. Got value: abc')


@pytest.mark.parametrize(("yaml_text", "key", "suggestion"), [
    ("model:\n  init_args:\n    lerning_rate: 1.0\n", "model.init_args.lerning_rate", "learning_rate"),
    ("trainer:\n  max_stepz: 3\n", "trainer.max_stepz", "max_steps"),
    ("data:\n  trian_path: x\n", "data.trian_path", "train_path"),
    ("model:\n  init_args:\n    sampling: {temprature: 1.0}\n", "model.init_args.sampling.temprature", "temperature"),
    ("model:\n  init_args:\n    objective_overrides: {kl_coeff: 0.1}\n",
     "model.init_args.objective_overrides.kl_coeff", "kl_coef"),
])
def test_misspelt_key_gets_did_you_mean_and_its_file(in_workspace, capsys, no_model_load, yaml_text, key, suggestion):
    mine = in_workspace / "mine.yaml"
    mine.write_text(yaml_text)
    line = one_error_line(capsys, ["--config", str(mine)])
    assert f"did you mean {suggestion!r}? ({key} is set in {mine})" in line


def test_misspelt_key_in_an_experiments_part_names_that_part(in_workspace, capsys, no_model_load):
    part = in_workspace / "part.yaml"
    part.write_text("trainer:\n  max_stepz: 3\n")
    exp = in_workspace / "exp.yaml"
    exp.write_text(f"defaults:\n  - {SMOKE}\n  - part.yaml\n")
    code = main(["fit", "--config", str(exp)])
    err = capsys.readouterr().err
    assert code == 2 and f"(trainer.max_stepz is set in {part})" in err, err


def test_unknown_subcommand_gets_did_you_mean(capsys):
    assert main(["tset"]) == 2
    assert "unknown subcommand 'tset'; did you mean 'test'?" in capsys.readouterr().err


def test_max_response_length_below_the_generation_cap_is_refused(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, ["--model.init_args.objective=dr_grpo",
                                   "--model.init_args.objective_overrides.max_response_length=8",
                                   "--model.init_args.objective_overrides.overlong_cache_length=4"])
    assert line.startswith("error: model.init_args.objective_overrides.max_response_length: 8 is below the "
                           "generation cap model.init_args.sampling.max_new_tokens=24")


def test_unreadable_record_is_one_line(in_workspace, capsys, monkeypatch):
    # A truncated image passes `convert --check-images header`; decoding it at the first step
    # raises BadRecord (visgrpo/rollout/prompts.py), which Lightning re-raises wrapped.
    from visgrpo.data.images import BadRecord

    def fit_hits_a_truncated_image(args):
        try:
            raise BadRecord("record 'q7': field 'image': cannot decode image: OSError: image file is truncated")
        except BadRecord as err:
            raise RuntimeError("in the training loop") from err
    monkeypatch.setenv("VISGRPO_DEBUG", "0")
    monkeypatch.setattr(visgrpo.cli, "run_cli", fit_hits_a_truncated_image)
    line = one_error_line(capsys, [])
    assert line.startswith("error: record 'q7': field 'image': cannot decode image")


def test_missing_config_file(in_workspace, capsys):
    line = one_error_line(capsys, ["--config", "nothere.yaml"])
    assert "nothere.yaml" in line


def test_unreachable_model_path_is_named(in_workspace, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")
    monkeypatch.setattr(huggingface_hub, "model_info", offline)
    args = [*tracking_args(in_workspace), "--model.init_args.policy.name_or_path=nowhere/model"]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    line = one_error_line(capsys, args)
    assert line == ("error: nowhere/model: not a local directory and the Hugging Face hub is not reachable "
                    "([Errno -2] Name or service not known) (--debug for the traceback)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_error_line(capsys, args)
    assert line == ("error: nowhere/model: not a local directory and not in the hub cache (HF_HUB_OFFLINE is set) "
                    "(--debug for the traceback)")


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("learning_rate", "-1e-4", "must be > 0, got -0.0001"),
    ("weight_decay", "-0.1", "must be >= 0, got -0.1"),
    ("warmup_steps", "-1", "must be >= 0, got -1"),
    ("max_grad_norm", "-1", "must be >= 0, got -1.0"),
    ("micro_batch_size", "0", "must be >= 1, got 0"),
    ("ppo_epochs", "0", "must be >= 1, got 0"),
    ("mini_batch_size", "0", "must be >= 1, got 0"),
    ("logprob_chunk_size", "0", "must be >= 1, got 0"),
    ("attention_chunk_size", "0", "must be >= 1, got 0"),
])
def test_bad_hyperparameter_refused_before_the_model_loads(in_workspace, capsys, no_model_load, key, value, rule):
    line = one_error_line(capsys, [f"--model.init_args.{key}={value}"])
    assert line == f"error: model.init_args.{key}: {rule} (--debug for the traceback)"


def test_fused_with_mini_batches_is_refused(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, ["--model.init_args.mini_batch_size=2", "--model.init_args.fused=true"])
    assert line.startswith("error: model.init_args.fused: fused=True needs ppo_epochs == 1 and mini_batch_size None")


def test_bad_objective_override_names_the_key(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, ["--model.init_args.objective_overrides.kl_coef=-1"])
    assert line.startswith("error: model.init_args.objective_overrides: ObjectiveConfig.kl_coef=-1")


def test_sft_hyperparameters_are_checked(in_workspace, capsys, no_model_load):
    line = one_error_line(capsys, ["--model.init_args.learning_rate=0"],
                          config=str(CONFIGS / "experiment/shapes_sft.yaml"))
    assert line == "error: model.init_args.learning_rate: must be > 0, got 0.0 (--debug for the traceback)"


def test_debug_flag_and_env_show_the_traceback(in_workspace, monkeypatch, no_model_load):
    monkeypatch.setenv("VISGRPO_DEBUG", "0")  # main() sets it to 1 for --debug; removed after the test
    # (jsonargparse wraps the ConfigError raised while it instantiates the model)
    with pytest.raises(ValueError, match="model.init_args.learning_rate: must be > 0"):
        main(["fit", "--config", SMOKE, "--model.init_args.learning_rate=-1e-4", "--debug"])
    monkeypatch.setenv("VISGRPO_DEBUG", "1")
    with pytest.raises(ValueError, match="model.init_args.learning_rate: must be > 0"):
        main(["fit", "--config", SMOKE, "--model.init_args.learning_rate=-1e-4"])


def test_bugs_keep_their_traceback(monkeypatch):
    monkeypatch.setenv("VISGRPO_DEBUG", "0")

    def bug(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(visgrpo.cli, "run_cli", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["fit"])


def test_check_hyperparameters_knows_each_name():
    check_hyperparameters(learning_rate=1e-5, weight_decay=0, warmup_steps=0, max_grad_norm=0, micro_batch_size=1,
                          ppo_epochs=1, logprob_chunk_size=1, attention_chunk_size=1)
    with pytest.raises(KeyError):
        check_hyperparameters(learnin_rate=1.0)


def test_console_command_exits_2_with_one_line(in_workspace):
    env = {**os.environ, "PYTHONPATH": str(CONFIGS.parent)}
    env.pop("VISGRPO_DEBUG", None)
    out = subprocess.run([sys.executable, "-m", "visgrpo.cli", "fit", "--config", SMOKE,
                          "--model.init_args.learning_rate=-1e-4"], cwd=in_workspace, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("error: model.init_args.learning_rate: must be > 0, got -0.0001 "
                                                   "(--debug for the traceback)")


def test_truncated_image_is_a_bad_record_naming_it():
    import io

    from PIL import Image

    from visgrpo.data.images import BadRecord
    from visgrpo.lightning.errors import find_user_error
    from visgrpo.rollout.prompts import row_images

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]  # the header (size) is intact
    with pytest.raises(BadRecord, match="record 'q7': field 'image'") as e:
        row_images({"id": "q7", "image": {"bytes": truncated, "path": None}, "width": 64, "height": 48})
    assert find_user_error(RuntimeError("wrapped")) is None
    assert find_user_error(e.value) is e.value
