"""``visgrpo plan``'s estimate against the measured peak of two real training steps on CPU
(experiments/bench/plan_memory.py, in a fresh process): within 20%, and the weights exact.
"""

from __future__ import annotations

import pytest

from experiments.bench.plan_memory import measure_in_subprocess, spec_of


@pytest.mark.slow
def test_estimate_within_20_percent_of_measured_peak():
    # A LoRA Qwen2.5-VL (text hidden 256, 4 layers), 64 image tokens, G = 4, T = 160: about
    # 100 MiB of gradients, optimiser state and activations, measured as resident-set growth.
    result = measure_in_subprocess(spec_of(("test", "qwen2_5_vl", 256, 4, True, False, 64, 4, 160)))
    assert result["weights_estimate"] == result["weights_loaded"]
    assert result["measured"] > 50 * 1024**2  # large enough for RSS noise (a few MiB) not to matter
    assert result["estimate"] / result["measured"] == pytest.approx(1.0, abs=0.2)
