"""``visgrpo plan``: the real recipe configs, parsed like ``visgrpo fit``, planned without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from visgrpo.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs/experiment/tiny_smoke.yaml")


def _config(*names: str) -> list[str]:
    out = ["--config", SMOKE]
    for name in names:
        out += ["--config", str(ROOT / "configs" / name)]
    return out


def test_qlora_papo_plan(capsys):
    code = main(["plan", *_config("model/qwen2_5_vl_7b_qlora.yaml", "credit/papo.yaml"), "--gpus", "1,8",
                 "--gpu-memory", "24"])
    out = capsys.readouterr().out
    assert code == 0
    assert "8,332,536,832 total, 40,370,176 trainable" in out  # 8,292,166,656 + the r=16 adapters
    assert "QLoRA nf4 r=16 all-linear" in out and "PAPOCredit" in out
    assert "masked-image forward yes" in out and "gradient checkpointing on" in out
    header = next(line for line in out.splitlines() if line.startswith("GiB per GPU"))
    assert header.split()[-4:] == ["1", "GPU", "8", "GPU"]
    tokens = next(line for line in out.splitlines() if line.startswith("rollout tokens / step"))
    assert tokens.split()[-2:] == [f"{4 * 8 * (512 + 1024):,}", f"{8 * 4 * 8 * (512 + 1024):,}"]


def test_full_fine_tuning_warns_where_it_does_not_fit(capsys):
    code = main(["plan", *_config("credit/ease.yaml"), "--model.init_args.policy.name_or_path",
                 "Qwen/Qwen2.5-VL-7B-Instruct", "--model.init_args.policy.dtype", "bfloat16",
                 "--gpus", "1,4", "--strategy", "fsdp", "--gpu-memory", "48"])
    out = capsys.readouterr().out
    assert code == 0
    assert "8,292,166,656 total, 8,292,166,656 trainable" in out
    assert "probe      2 layer(s) (1 with grad" in out  # EASE's layer + the diagnostics layer
    fits = next(line for line in out.splitlines() if line.startswith("fits 48 GiB"))
    # bf16 weights and gradients and AdamW's bf16 moments: 8 B/param = 61.8 GiB of state on one
    # GPU; sharded over 4 GPUs 15.4 GiB plus the (unsharded) activations
    assert fits.split()[-2:] == ["NO", "yes"]
    assert "warning: 1 GPU(s): estimated peak" in out and "warning: 4 GPU(s)" not in out


def test_tiny_model_plan(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # tiny:qwen2_5_vl is built into ./artifacts
    assert main(["plan", *_config(), "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "tiny:qwen2_5_vl (qwen2_5_vl, float32, full fine-tuning)" in out
    assert "DDP (replicated)" in out and "fits 80 GiB" in out


@pytest.mark.parametrize(("extra", "needle"), [
    (["--model.init_args.policy.name_or_path", "Org/NoSuchModel"], "Org/NoSuchModel: not a local model directory"),
    (["--model.init_args.micro_batch_size", "0"], "model.init_args.micro_batch_size: must be >= 1"),
    (["--gpus", "0,2"], "--gpus: expected positive integers"),
    (["--model.init_args.no_such_key", "1"], "no_such_key"),
])
def test_user_errors_are_one_line(capsys, extra, needle):
    code = main(["plan", *_config(), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
