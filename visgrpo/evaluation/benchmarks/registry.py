"""The benchmark registry: one typed :class:`Benchmark` spec per benchmark.

A benchmark module (``visgrpo/evaluation/benchmarks/<name>.py``) defines a loader
``fn(root) -> list[EvalItem]`` and registers it with :func:`register`::

    @register("pope", source="lmms-lab/POPE; AoiDragon/POPE evaluate.py",
              metrics=pope_metrics)
    def pope(root: Path) -> list[EvalItem]: ...

The spec names the benchmark, its loader, its default scorer (the items carry the scorer
each one uses, ``EvalItem.scorer``), the composite-metrics function the paper reports
(``fn(items, completions, scores) -> {metric name: value}``, called once per sample of
each item; ``None`` when accuracy is the reported metric) and the source its layout and
rules were read from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visgrpo.evaluation.items import EvalItem

Loader = Callable[[Path], list[EvalItem]]
CompositeMetrics = Callable[[Sequence[EvalItem], Sequence[str], Sequence[float]], dict[str, float]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: how it is read, scored and summarised.

    Attributes:
        name: the registry name (``--benchmark NAME=PATH``).
        loader: ``fn(root) -> list[EvalItem]`` for the local download at ``root``.
        scorer: the scorer its items use by default (``visgrpo.evaluation.scoring.SCORERS``).
        metrics: composite metrics ``fn(items, completions, scores) -> {name: value}``
            over one completion per item, or ``None`` (accuracy only).
        source: where the layout and the rules come from (dataset card, authors' code).
    """

    name: str
    loader: Loader
    scorer: str
    metrics: CompositeMetrics | None = None
    source: str = ""

    def __call__(self, root: Path) -> list[EvalItem]:
        return self.loader(Path(root))


BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str, *, scorer: str, source: str, metrics: CompositeMetrics | None = None):
    """Decorator registering a loader as benchmark ``name`` (returns the loader unchanged)."""

    def deco(fn: Loader) -> Loader:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} is registered twice")
        BENCHMARKS[name] = Benchmark(name, fn, scorer, metrics, source)
        return fn

    return deco


def load_benchmark(name: str, root: str | Path, limit: int | None = None) -> list[EvalItem]:
    """The items of benchmark ``name`` from its local copy ``root`` (first ``limit``)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    items = BENCHMARKS[name](Path(root))
    if not items:
        raise ValueError(f"benchmark {name}: no records in {root}")
    return items[:limit] if limit else items


def composite_rows(name: str, results: Sequence[Any]) -> list[dict]:
    """The benchmark's composite metrics as table rows ``{benchmark, category, n, accuracy,
    metric}`` (``category`` is the metric's name, ``accuracy`` its value in [0, 1], ``n``
    the items of the category a ``<category>/<metric>`` name names, else all items).

    Args:
        results: per item, an object with ``item``, ``completions`` and ``scores`` (the
            runner's ``ItemResult``). With k samples per item (avg@k), the metrics are
            computed over each sample index and averaged, as a paper's k runs would be.
    """
    spec = BENCHMARKS[name]
    if spec.metrics is None or not results:
        return []
    k = min(len(r.completions) for r in results)
    items = [r.item for r in results]
    runs = [spec.metrics(items, [r.completions[j] for r in results],
                         [r.scores[j] for r in results]) for j in range(k)]
    names = list(runs[0]) if runs else []
    sizes: dict[str, int] = {}
    for item in items:
        sizes[item.category] = sizes.get(item.category, 0) + 1
    return [{"benchmark": name, "category": m, "n": sizes.get(m.rsplit("/", 1)[0], len(items)),
             "accuracy": sum(run[m] for run in runs) / len(runs), "metric": m} for m in names]


def get(row: dict, key: str, where: str, default: Any = ...) -> Any:
    """``row[key]``; a missing (or null, without ``default``) value is one line naming
    the record and column.
    """
    value = row.get(key, default)
    if value is ... or (value is None and default is ...):
        raise ValueError(f"record {where!r}: column {key!r} is missing")
    return value


def first(row: dict, keys: tuple[str, ...], where: str) -> Any:
    """The first set value among ``keys``."""
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    raise ValueError(f"record {where!r}: none of the columns {', '.join(keys)} is set")


def text(value: Any) -> str:
    """A cell as stripped text (``3.0`` -> ``"3"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
