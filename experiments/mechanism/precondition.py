"""The learning precondition (issue 22): does the baseline learn on this testbed at all?

An accuracy comparison between credit methods means something only where plain DAPO itself
raises held-out accuracy over the warm start; where it does not, "no method changes
accuracy" is no finding. :func:`check` tests the four parts on a study's per-run results:

1. **size**: DAPO's mean held-out greedy accuracy is at least :attr:`Criteria.min_gain`
   above the warm start's, or it removes at least :attr:`Criteria.error_fraction` of the warm
   start's error (``1 - accuracy``);
2. **significance**: over at least :attr:`Criteria.min_seeds` seeds, the bootstrap 95% CI
   of the per-seed gain excludes 0 and the t-test p is below :attr:`Criteria.alpha` (the warm
   start is one deterministic greedy validation, so the per-seed gain is DAPO's accuracy
   minus that constant; an exact sign-flip test over 5 seeds cannot go below 2/32 = 0.0625,
   so the t-test carries the p < 0.01);
3. **sampled training accuracy rises**: the first-round sampled accuracy (the policy's own
   samples, before DAPO's filter) averaged over the last :attr:`Criteria.window` steps is
   above its average over the first ones, with a bootstrap CI over seeds above 0;
4. **the image is needed**: the same policy validated with the image blanked
   (``val/accuracy_no_image``) stays at most :attr:`Criteria.no_image_margin` above chance,
   at the warm start and after RL, so the gain cannot come from the text alone.

Pure functions over plain dicts (seed -> value), tested on hand-made numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from experiments.mechanism.stats import bootstrap_ci, paired_t_p


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the precondition (issue 22's values)."""

    min_gain: float = 0.10
    error_fraction: float = 0.5
    alpha: float = 0.01
    min_seeds: int = 5
    window: int = 10
    no_image_margin: float = 0.10


def window_means(curve: list[list[float]], window: int) -> tuple[float, float]:
    """Mean of the first and of the last ``window`` values of a ``[[step, value], ...]``
    history (NaN, NaN for fewer than ``2 * window`` points: the windows would overlap).
    """
    v = np.array([x for _, x in sorted(curve)], dtype=np.float64)
    if len(v) < 2 * window:
        return math.nan, math.nan
    return float(v[:window].mean()), float(v[-window:].mean())


def check(warm_accuracy: float, final_accuracy: dict[int, float], sampled_curves: dict[int, list],
          chance: float, no_image_warm: float | None, no_image_final: dict[int, float],
          criteria: Criteria = Criteria()) -> dict:
    """Test the precondition; returns every part's numbers, ``ok`` per part and ``met``.

    Args:
        warm_accuracy: the warm start's held-out greedy accuracy.
        final_accuracy: seed -> DAPO's held-out greedy accuracy at the end of training.
        sampled_curves: seed -> DAPO's ``reward/first_round/accuracy`` history.
        chance: accuracy of a uniform guess among the task's answers.
        no_image_warm: the warm start's ``val/accuracy_no_image`` (None: not measured).
        no_image_final: seed -> DAPO's ``val/accuracy_no_image`` at the end.
        criteria: the thresholds.
    """
    c = criteria
    seeds = sorted(s for s, v in final_accuracy.items() if np.isfinite(v))
    gains = [final_accuracy[s] - warm_accuracy for s in seeds]
    gain, lo, hi = bootstrap_ci(gains)
    p_t = paired_t_p(gains)
    error = 1.0 - warm_accuracy
    needed = min(c.min_gain, c.error_fraction * error)
    size = {"gain": gain, "needed": needed, "error_removed": gain / error if error > 0 else math.nan,
            "ok": bool(np.isfinite(gain) and gain >= needed)}
    signif = {"n": len(seeds), "lo": lo, "hi": hi, "p_t": p_t,
              "ok": bool(len(seeds) >= c.min_seeds and lo > 0 and np.isfinite(p_t) and p_t < c.alpha)}
    rises = []
    for s in sorted(sampled_curves):
        first, last = window_means(sampled_curves[s], c.window)
        if np.isfinite(first):
            rises.append(last - first)
    rise, rlo, rhi = bootstrap_ci(rises)
    rising = {"n": len(rises), "rise": rise, "lo": rlo, "hi": rhi, "ok": bool(len(rises) >= 1 and rlo > 0)}
    finals = [v for v in no_image_final.values() if np.isfinite(v)]
    levels = ([no_image_warm] if no_image_warm is not None and np.isfinite(no_image_warm) else []) + finals
    ceiling = chance + c.no_image_margin
    image = {"chance": chance, "ceiling": ceiling, "warm": no_image_warm,
             "final": float(np.mean(finals)) if finals else math.nan, "highest": max(levels) if levels else math.nan,
             "ok": bool(no_image_warm is not None and finals and max(levels) <= ceiling)}
    parts = {"size": size, "significance": signif, "sampled_rising": rising, "needs_image": image}
    return {**parts, "met": all(p["ok"] for p in parts.values()), "warm_accuracy": warm_accuracy,
            "failed": [k for k, p in parts.items() if not p["ok"]]}


def describe(result: dict) -> str:
    """One sentence per part: what was measured against what was needed."""
    s, g, r, i = (result[k] for k in ("size", "significance", "sampled_rising", "needs_image"))
    word = {True: "met", False: "NOT met"}
    return " ".join([
        f"Size {word[s['ok']]}: DAPO {s['gain']:+.3f} over the warm start's {result['warm_accuracy']:.3f} "
        f"(needed {s['needed']:+.3f}: +0.10 or half the error).",
        f"Significance {word[g['ok']]}: {g['n']} seeds, 95% CI [{g['lo']:+.3f}, {g['hi']:+.3f}], "
        f"t-test p = {g['p_t']:.2g}"
        f" (needed >= 5 seeds, CI above 0, p < 0.01).",
        f"Sampled accuracy rising {word[r['ok']]}: " + (
            f"mean of the last minus the first 10 steps {r['rise']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] over "
            f"{r['n']} seeds." if r["n"] else "not measured (no sampled-accuracy curves in the runs)."),
        f"Needs the image {word[i['ok']]}: no-image accuracy {_num(i['warm'])} at the warm start, "
        f"{_num(i['final'])} after RL (chance {i['chance']:.3f}, allowed up to {i['ceiling']:.3f}).",
    ])


def _num(x) -> str:
    return "not measured" if x is None or not np.isfinite(x) else f"{x:.3f}"


def refusal(result: dict | None) -> str | None:
    """Why accuracy claims are refused on this testbed (None when the precondition is met)."""
    if result is None:
        return "refused: the learning precondition could not be checked (no dapo runs or no warm-start validation)"
    if result["met"]:
        return None
    return (f"refused: the baseline fails the learning precondition ({', '.join(result['failed'])}), "
            "so no accuracy conclusion can be drawn here")
