"""Reading the shapes experiment's MLflow runs and aggregating them over seeds.

Runs are found by their tags (set by :mod:`experiments.shapes.recipe`): ``study`` (``full``
or ``demo``), ``method`` (``dapo``, ``dapo+sayo``, ..., or ``warmstart`` for the validation
of the starting checkpoint) and ``seed``. Only finished runs count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

POSITION_BINS = 10


@dataclass
class RunData:
    """One run: its tags and metric histories ``{key: (steps [n], values [n])}``."""

    run_id: str
    method: str
    seed: int
    histories: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def last(self, key: str) -> float:
        """The last logged value of ``key`` (NaN if never logged)."""
        h = self.histories.get(key)
        return float(h[1][-1]) if h is not None and len(h[1]) else math.nan

    def first(self, key: str) -> float:
        h = self.histories.get(key)
        return float(h[1][0]) if h is not None and len(h[1]) else math.nan


def client_for(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def load_runs(client, experiment: str, study: str, keys: list[str]) -> list[RunData]:
    """Finished runs of ``experiment`` tagged ``study`` with the histories of ``keys``."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.study = '{study}' and attributes.status = 'FINISHED'",
        max_results=10_000,
    )
    out = []
    for r in runs:
        tags = r.data.tags
        if "method" not in tags:
            continue
        data = RunData(r.info.run_id, tags["method"], int(tags.get("seed", 0)))
        for key in keys:
            if key not in r.data.metrics:
                continue
            hist = sorted(client.get_metric_history(r.info.run_id, key), key=lambda m: (m.step, m.timestamp))
            steps = np.array([m.step for m in hist], dtype=np.int64)
            vals = np.array([m.value for m in hist], dtype=np.float64)
            data.histories[key] = (steps, vals)
        out.append(data)
    return sorted(out, key=lambda d: (d.method, d.seed))


def by_method(runs: list[RunData]) -> dict[str, list[RunData]]:
    groups: dict[str, list[RunData]] = defaultdict(list)
    for r in runs:
        groups[r.method].append(r)
    return dict(groups)


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return float(v.mean()), std, len(v)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def curve(runs: list[RunData], key: str, window: int = 1):
    """Mean and std over runs of ``key`` on the steps every run logged.

    Returns:
        ``(steps [k], mean [k], std [k])``, std with ddof=1 (0 for a single run); empty
        arrays when no run logged ``key``.
    """
    hists = [r.histories[key] for r in runs if key in r.histories]
    if not hists:
        return np.array([]), np.array([]), np.array([])
    common = set(hists[0][0].tolist())
    for s, _ in hists[1:]:
        common &= set(s.tolist())
    steps = np.array(sorted(common), dtype=np.int64)
    rows = []
    for s, v in hists:
        lookup = dict(zip(s.tolist(), smooth(v, window).tolist(), strict=True))
        rows.append([lookup[t] for t in steps])
    arr = np.asarray(rows, dtype=np.float64)  # [runs, k]
    std = arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1])
    return steps, arr.mean(0), std


def position_curve(run: RunData, prefix: str, which: str = "last") -> np.ndarray:
    """[POSITION_BINS] visual mass by relative response position (``prefix`` ``val/`` or ``diag/``)."""
    get = run.last if which == "last" else run.first
    return np.array([get(f"{prefix}visual_mass_pos{k:02d}") for k in range(POSITION_BINS)])
