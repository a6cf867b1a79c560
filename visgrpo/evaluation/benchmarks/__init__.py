"""One loader per benchmark, for the layout its download leaves on disk.

Each module reads a local copy (visgrpo/evaluation/sources.py: parquet / JSON / arrow,
images embedded or as files beside) and returns :class:`EvalItem` s. The layout each one
follows, and where it was learnt, is in its docstring; a missing column is one line naming
the record and column. ``registry.py`` defines the :class:`Benchmark` spec a new benchmark
registers; a new module is added to ``MODULES`` (its place there is the order
``visgrpo eval --data-root`` runs and prints it).
"""

from importlib import import_module

from visgrpo.evaluation.benchmarks.registry import (
    BENCHMARKS,
    Benchmark,
    CompositeMetrics,
    Loader,
    composite_rows,
    load_benchmark,
    register,
)

MODULES = ("mathvista", "mathverse", "geometry3k", "wemath", "logicvista", "mmstar",
           "hallusionbench", "pope", "refcoco",
           # breadth (issue 23 item 7)
           "mathvision", "mmmu", "mmmu_pro", "chartqa", "cv_bench", "clevr_count", "mmvp",
           "blink", "dynamath", "mmk12")
for _module in MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["BENCHMARKS", "MODULES", "Benchmark", "CompositeMetrics", "Loader", "composite_rows",
           "load_benchmark",
           "register"]
