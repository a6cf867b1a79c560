"""Third-party noise that is not the user's concern is silenced (visgrpo/lightning/noise.py),
and the progress bar is not labelled ``Epoch 0/-2`` (callbacks.StepProgressBar).
"""

from __future__ import annotations

import logging
import warnings

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from visgrpo.lightning.callbacks import StepProgressBar
from visgrpo.lightning.noise import silence_third_party_noise


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        silence_third_party_noise()
        yield


def test_litlogger_tip_is_dropped_and_other_lightning_info_kept(quiet, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    Trainer(logger=CSVLogger(tmp_path), default_root_dir=tmp_path, enable_progress_bar=False, max_steps=1)
    text = caplog.text
    assert "litlogger" not in text
    assert "GPU available" in text  # Lightning's own facts stay


def test_manual_optimisation_checkpoint_warning_is_silenced(quiet):
    with warnings.catch_warnings(record=True) as caught:
        rank_zero_warn("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no "
                       "pre-optimization state was saved. ...")
        rank_zero_warn("a warning the user must see")
    assert [str(w.message) for w in caught] == ["a warning the user must see"]


def test_bitsandbytes_cpu_kernel_warning_is_dropped(quiet, caplog):
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "no kernels")
        log.warning("another bitsandbytes warning")
    assert "gemm_4bit_forward" not in caplog.text and "another bitsandbytes warning" in caplog.text


def test_filters_are_installed_once():
    silence_third_party_noise()
    silence_third_party_noise()
    assert len(logging.getLogger("lightning.pytorch.utilities.rank_zero").filters) == 1


@pytest.mark.parametrize(("max_epochs", "label"), [(-1, "Epoch 0"), (3, "Epoch 0/2")])
def test_progress_bar_label(max_epochs, label):
    bar = StepProgressBar()
    bar._trainer = type("T", (), {"max_epochs": max_epochs})()
    assert bar._get_train_description(0).strip() == label
    if max_epochs < 0:  # Lightning's own bar: the label this replaces
        plain = RichProgressBar()
        plain._trainer = bar._trainer
        assert plain._get_train_description(0).strip() == "Epoch 0/-2"
