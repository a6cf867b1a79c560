"""Documented commands never overwrite committed results: every study and benchmark script
writes under ``runs/`` unless ``--out`` (``--results``) names a path, e.g. the committed one.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import pytest

#: script module -> the option holding its output path.
SCRIPTS = {
    "experiments.bench.__main__": "--out",
    "experiments.bench.plan_memory": "--out",
    "experiments.fidelity.__main__": "--out",
    "experiments.learning.__main__": "--results",
    "experiments.shapes.__main__": "--out",
    "experiments.bench.prefill_bench": "--out",
    "experiments.bench.prefix_bench": "--out",
    "experiments.bench.scaling": "--out",
    "experiments.mechanism.__main__": "--results",
    "experiments.shapes.report": "--out",
    "experiments.shapes.run_all": "--out",
    "experiments.shapes.warmstart": "--out",
}


class _Parsed(Exception):
    """Raised instead of running the script once its arguments are parsed."""


@pytest.mark.parametrize(("module", "option"), sorted(SCRIPTS.items()))
def test_default_output_is_under_runs(monkeypatch, module, option):
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        ns = parse(self, [], namespace)
        raise _Parsed(getattr(ns, self._option_string_actions[option].dest))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [module])
    main = importlib.import_module(module).main
    with pytest.raises(_Parsed) as parsed:
        main([])
    assert str(parsed.value.args[0]).startswith("runs/"), (module, parsed.value.args[0])


def test_probe_memory_default_is_under_runs():
    from experiments.bench.probe_memory_bench import default_out

    assert str(default_out("tiny", True)) == "runs/bench/results_probe_tiny_quick.json"
    assert str(default_out("bench", False)) == "runs/bench/results_probe.json"
