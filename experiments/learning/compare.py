"""The credit comparison on a testbed where DAPO learns, from the per-run result files.

``python -m experiments.learning.compare --results experiments/learning/results`` writes
``experiments/learning/results/comparison.md`` (with ``comparison.json`` and
``learning_curves.png`` there) beside the mechanism report
(``python -m experiments.mechanism --report-only``), reading only
``runs/*.json``, so every number here can be recomputed from the committed raw runs:

* the learning precondition (:mod:`experiments.mechanism.precondition`) of ``dapo``;
* per arm: held-out greedy accuracy (mean, bootstrap 95% CI), the paired Δ vs ``dapo`` on
  the same seeds (bootstrap CI, exact sign-flip p, paired t-test p), the arm's own target at
  its layer, and the learning speed: the first validation step at which a run reaches
  ``dapo``'s mean final accuracy (validation every ``val_every`` steps; "—" when never);
* the study's power: the minimal detectable paired effect at 80% power and two-sided
  alpha 0.05 (:func:`mde`), and the largest gain over ``dapo`` the CIs leave open.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from experiments.mechanism import precondition, report
from experiments.mechanism.stats import bootstrap_ci, paired

BASELINE = "dapo"
PEERS = ("trl_dapo",)  # the same recipe in another framework: its own precondition, not a credit arm
EARLY = 10  # steps of the early sampled-accuracy mean (a finer speed measure than validation every 10 steps)
# Each arm's own target quantity at its own layer (visgrpo.credit.mechanism), as in report.py.
TARGETS = {
    "ease": "val/ease/evidence_ratio", "sayo": "val/sayo/region_ratio", "vgpo": "val/vgpo/focus_slope",
    "vppo": "val/vppo/dependency_top", "papo": "val/vppo/dependency",
}


def target_of(arm: str) -> str | None:
    return next((key for name, key in TARGETS.items() if name in arm), None)


def mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided paired t-test over ``n`` seeds detects with
    ``power`` when the differences have standard deviation ``sd``:
    ``(t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)`` (the usual t approximation).
    """
    from scipy import stats

    if n < 2 or not np.isfinite(sd):
        return math.nan
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def steps_to_reach(curve: list, level: float) -> float:
    """First step of a ``[[step, value], ...]`` validation history at or above ``level`` (+1:
    steps taken), NaN when never.
    """
    for step, value in sorted(curve):
        if value >= level - 1e-9:
            return float(step + 1)
    return math.nan


def compare(data: dict[str, dict[int, dict]], chance: float) -> dict:
    """Every number of the comparison (see the module docstring)."""
    base = data.get(BASELINE, {})
    base_acc = report.values(base, "val/accuracy")
    target_level = float(np.mean(list(base_acc.values()))) if base_acc else math.nan
    rows = []
    for arm, runs in sorted(data.items(), key=lambda kv: (kv[0] != BASELINE, kv[0])):
        if arm == "warmstart" or arm in PEERS:
            continue
        acc = report.values(runs, "val/accuracy")
        mean, lo, hi = bootstrap_ci(acc.values())
        d = paired(acc, base_acc) if arm != BASELINE else None
        diffs = [acc[s] - base_acc[s] for s in sorted(set(acc) & set(base_acc))] if d else []
        reach = [steps_to_reach(m.get("_curves", {}).get("val/accuracy", []), target_level) for m in runs.values()]
        tkey = target_of(arm)
        t = paired(report.values(runs, tkey), report.values(base, tkey)) if tkey and d else None
        rows.append({
            "arm": arm, "n": len(acc), "accuracy": mean, "lo": lo, "hi": hi,
            "no_image": float(np.mean(list(report.values(runs, "val/accuracy_no_image").values()) or [math.nan])),
            "delta": d and d["mean"], "delta_lo": d and d["lo"], "delta_hi": d and d["hi"], "p": d and d["p"],
            "p_t": d and d["p_t"], "sd_diff": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
            "steps_to_dapo_final": float(np.nanmean(reach)) if np.isfinite(reach).any() else math.nan,
            "reached": int(np.isfinite(reach).sum()), "target": tkey,
            "early_sampled": float(np.mean([np.mean([x for _, x in sorted(m["_curves"][report.SAMPLED])][:EARLY])
                                            for m in runs.values() if report.SAMPLED in m.get("_curves", {})]
                                           or [math.nan])),
            "target_value": bootstrap_ci(report.values(runs, tkey).values())[0] if tkey else None,
            "target_delta": t and t["mean"], "target_lo": t and t["lo"], "target_hi": t and t["hi"],
            "target_p_t": t and t["p_t"],
        })
    sds = [r["sd_diff"] for r in rows if r["arm"] != BASELINE and np.isfinite(r["sd_diff"])]
    n = min((r["n"] for r in rows if r["arm"] != BASELINE), default=0)
    pooled = float(np.sqrt(np.mean(np.square(sds)))) if sds else math.nan
    others = [r for r in rows if r["arm"] != BASELINE and r["delta_hi"] is not None]
    peers = {}
    for peer in PEERS:
        if peer in data:  # the peer's own precondition against the same warm start (its seeds only)
            peers[peer] = report.learning({"warmstart": data.get("warmstart", {}), BASELINE: data[peer]}, chance)
    return {"precondition": report.learning(data, chance), "peers": peers, "dapo_final": target_level, "rows": rows,
            "power": {"n": n, "sd_diff_pooled": pooled, "mde_80": mde(pooled, n),
                      "largest_gain_not_excluded": max((r["delta_hi"] for r in others), default=math.nan),
                      "winners_p05": [r["arm"] for r in others if r["delta"] > 0 and r["p_t"] < 0.05]}}


def _f(x, digits=3, sign=False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def markdown(out: dict, title: str) -> str:
    pre, pw = out["precondition"], out["power"]
    lines = [f"# {title}", "", "## Learning precondition (dapo vs the warm start)", "",
             ("**Met.** " if pre and pre["met"] else "**Not met: accuracy comparisons below are refused.** ")
             + (precondition.describe(pre) if pre else "No dapo runs or warm-start validation."), "",
             "## Held-out accuracy, target and speed per arm", "",
             f"dapo's mean final accuracy (the speed target): {_f(out['dapo_final'])}. Δ = paired difference from dapo "
             "on the same seeds [bootstrap 95% CI]; p: exact sign-flip / paired t-test.", "",
             "| arm | seeds | held-out accuracy [95% CI] | Δ vs dapo [95% CI] | p sign-flip | p t-test | "
             "no-image acc | "
             "target at its layer | target Δ vs dapo [95% CI], p t | steps to dapo's final acc (runs reaching) | "
             f"sampled acc, first {EARLY} steps |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        d = ("—" if r["delta"] is None
             else f"{_f(r['delta'], sign=True)} [{_f(r['delta_lo'], sign=True)}, {_f(r['delta_hi'], sign=True)}]")
        tv = "—" if not r["target"] else f"{r['target'].split('/', 1)[1]} = {_f(r['target_value'])}"
        td = ("—" if r["target_delta"] is None else
              f"{_f(r['target_delta'], sign=True)} [{_f(r['target_lo'], sign=True)}, {_f(r['target_hi'], sign=True)}], "
              f"{_f(r['target_p_t'], 2)}")
        lines.append(f"| {r['arm']} | {r['n']} | {_f(r['accuracy'])} [{_f(r['lo'])}, {_f(r['hi'])}] | {d} | "
                     f"{_f(r['p'])} | {_f(r['p_t'])} | {_f(r['no_image'])} | {tv} | {td} | "
                     f"{_f(r['steps_to_dapo_final'], 1)} ({r['reached']}/{r['n']}) | {_f(r['early_sampled'])} |")
    for peer, res in out["peers"].items():
        lines += ["", f"## Peer: {peer} (the same recipe and warm start, TRL's GRPOTrainer)", "",
                  ("Every part met. " if res and res["met"] else
                   f"Parts not met: {', '.join(res['failed']) if res else 'no runs'}. ")
                  + (precondition.describe(res) if res else "")]
    win = pw["winners_p05"]
    lines += ["", "## Power", "",
              f"Winners over dapo at p < 0.05 (paired t-test): {', '.join(win) if win else 'none'}. "
              f"Pooled sd of the paired differences {_f(pw['sd_diff_pooled'])} over {pw['n']} seeds: the smallest "
              f"effect this study detects at 80% power (two-sided alpha 0.05) is {_f(pw['mde_80'])}; the largest gain "
              f"over dapo any arm's 95% CI leaves open is {_f(pw['largest_gain_not_excluded'], sign=True)}.", ""]
    return "\n".join(lines)


def curves_figure(data: dict[str, dict[int, dict]], path: Path, title: str) -> Path:
    """Held-out greedy and sampled training accuracy per arm (mean over seeds), the warm
    start's greedy (validation) and sampled (step 0 of every run) levels marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warm = next(iter(data.get("warmstart", {}).values()), {})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    step0 = []
    for arm, runs in data.items():
        if arm == "warmstart":
            continue
        val = [dict(map(tuple, m["_curves"]["val/accuracy"])) for m in runs.values()
               if "val/accuracy" in m.get("_curves", {})]
        if val:
            steps = sorted(set.intersection(*(set(v) for v in val)))
            x0, y0 = ([0], [warm["val/accuracy"]]) if "val/accuracy" in warm else ([], [])
            ax1.plot(x0 + [s + 1 for s in steps], y0 + [np.mean([v[s] for v in val]) for s in steps], marker="o",
                     label=f"{arm} ({len(val)})",
                     lw=2.5 if arm == BASELINE else 1.2, zorder=3 if arm == BASELINE else 2)
        sampled = [np.array([x for _, x in sorted(m["_curves"][report.SAMPLED])]) for m in runs.values()
                   if report.SAMPLED in m.get("_curves", {})]
        if sampled:
            k = min(len(s) for s in sampled)
            step0 += [s[0] for s in sampled]
            mean = np.mean([s[:k] for s in sampled], axis=0)
            smooth = np.convolve(mean, np.ones(5) / 5, mode="valid")
            ax2.plot(np.arange(len(smooth)) + 5, smooth, label=arm, lw=2.5 if arm == BASELINE else 1.2)
    if "val/accuracy" in warm:
        for ax in (ax1, ax2):
            ax.axhline(warm["val/accuracy"], ls="--", c="k", lw=1, label="warm start, greedy (held-out)")
    if step0:
        for ax in (ax1, ax2):
            ax.axhline(float(np.mean(step0)), ls=":", c="grey", lw=1.5, label="warm start, sampled (step 1)")
    ax1.set(xlabel="RL step", ylabel="accuracy",
            title="held-out greedy accuracy (mean over seeds; step 0 = warm start)")
    ax2.set(xlabel="RL step", title="sampled training accuracy (first round; seeds, 5-step mean)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.title.set_fontsize(9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="experiments/learning/results")
    parser.add_argument("--chance", type=float, default=1 / 6)
    parser.add_argument("--title", default="Credit comparison on the learning testbed")
    args = parser.parse_args(argv)
    results = Path(args.results)
    data = report.load(results)
    out = compare(data, args.chance)
    for name, text in (("comparison.json", json.dumps(out, indent=1, default=float) + "\n"),
                       ("comparison.md", markdown(out, args.title) + "\n![learning curves](learning_curves.png)\n")):
        tmp = results / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(results / name)
    curves_figure(data, results / "learning_curves.png", args.title)
    print(markdown(out, args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
