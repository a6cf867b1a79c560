"""Small synthetic evidence datasets shared by the data-tools tests (built once)."""

from __future__ import annotations

import pytest

from data_tools.cli import build_parser, main


def run_command(argv: list[str]) -> int:
    """Run one ``visgrpo-data`` sub-command WITHOUT :func:`data_tools.cli.main`'s error
    handling, so that bad input raises (tests then check the exception's record and field;
    ``test_cli_errors.py`` checks what ``main`` makes of it: one line, exit code 1).
    """
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """``visgrpo-data synth`` output: 36 samples, seed 11, train/ (32) + validation/ (4)."""
    out = tmp_path_factory.mktemp("synth") / "shapes"
    assert main(["synth", "--out", str(out), "--num", "36", "--seed", "11", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def masked_dir(synth_dir, tmp_path_factory):
    """``synth_dir`` with masks for the released Qwen2.5-VL settings."""
    out = tmp_path_factory.mktemp("masked") / "shapes_q25"
    argv = ["masks", "--dataset", str(synth_dir), "--out", str(out), "--processor", "qwen2_5_vl",
            "--no-progress"]
    assert main(argv) == 0
    return out
