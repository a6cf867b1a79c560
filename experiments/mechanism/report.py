"""The mechanism study's report, from the per-run result files (not from MLflow).

``python -m experiments.mechanism --report-only --results DIR`` writes ``DIR/README.md``,
``DIR/summary.json`` and the figures: every arm's held-out target quantities and accuracy
(mean and bootstrap 95% CI over seeds; paired difference from ``dapo`` on the same seeds
with its CI and the exact sign-flip p), the dose-response curves, the evidence ratio per
layer, the forgetting curves, and the claims table (each paper's qualitative claim, what
was measured, the verdict).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from experiments.mechanism import precondition, study
from experiments.mechanism.stats import bootstrap_ci, paired

BASELINE = "dapo"
QUANTITIES = {
    "val/accuracy": "accuracy (greedy)",
    "val/ease/evidence_ratio": "EASE: evidence ratio at its layer",
    "val/ease/kl": "EASE: KL(attention || evidence target) at its layer",
    "val/sayo/region_ratio": "SAYO: region / image attention of its tokens",
    "val/sayo/reward": "SAYO: attention bonus r_attn",
    "val/vgpo/focus_slope": "VGPO: slope of visual focus over the response",
    "val/atrl/clusters_per_response": "AT-RL: clusters per response",
    "val/atrl/weight_std": "AT-RL: std of token weights",
    "val/atrl/anchor_share": "AT-RL: anchor share",
    "val/vppo/dependency": "VPPO/PAPO: visual dependency of response tokens",
    "val/vppo/dependency_top": "VPPO/PAPO: visual dependency of VPPO's top-40% tokens",
    "val/evidence_ratio": "evidence ratio, last layer",
    "val/response_length": "response length (tokens)",
}
BINS = 10
MIN_CHAIN = 16  # response tokens below which there is no reasoning chain to forget over

# (claim, arm, quantity, predicted sign of the change vs dapo)
CLAIMS = [
    ("EASE raises evidence attention at its supervised layer (paper's λ = 1e-3)", "ease_lambda0.001",
     "val/ease/evidence_ratio", 1),
    ("EASE raises evidence attention at its supervised layer (λ = 0.1)", "ease_lambda0.1",
     "val/ease/evidence_ratio", 1),
    ("EASE improves accuracy (λ = 0.1)", "ease_lambda0.1", "val/accuracy", 1),
    ("SAYO improves region attention with an attention-only reward (weight 1)", "sayo_weight1",
     "val/sayo/region_ratio", 1),
    ("SAYO improves accuracy (weight 1)", "sayo_weight1", "val/accuracy", 1),
    ("VGPO flattens the visual-forgetting curve", "dapo+vgpo", "val/vgpo/focus_slope", 1),
    ("VGPO improves accuracy", "dapo+vgpo", "val/accuracy", 1),
    ("AT-RL improves accuracy by weighting perceptual-anchor clusters", "dapo+atrl", "val/accuracy", 1),
    ("EASE + AT-RL improves accuracy", "dapo+ease+atrl", "val/accuracy", 1),
    ("VPPO improves accuracy (token filtering and advantage scaling by visual dependency)", "dapo+vppo",
     "val/accuracy", 1),
    ("PAPO raises the policy's visual dependency (implicit perception loss)", "dapo+papo", "val/vppo/dependency", 1),
    ("PAPO improves accuracy", "dapo+papo", "val/accuracy", 1),
    ("DAPO beats GRPO (reference)", "grpo", "val/accuracy", -1),
]


def load(results: Path) -> dict[str, dict[int, dict]]:
    """``config -> seed -> final metrics`` of every result file under ``results/runs``."""
    out: dict[str, dict[int, dict]] = {}
    for path in sorted((results / "runs").glob("*.json")):
        r = json.loads(path.read_text())
        out.setdefault(r["config"], {})[int(r["seed"])] = r["final"] | {"_steps": r.get("steps"),
                                                                          "_curves": r.get("curves", {})}
    return out


SAMPLED = "reward/first_round/accuracy"


def learning(data: dict[str, dict[int, dict]], chance: float | None) -> dict | None:
    """The learning precondition (:mod:`.precondition`) of ``dapo`` against the warm start
    (None without both).
    """
    warm = next(iter(data.get("warmstart", {}).values()), {})
    base = data.get(BASELINE, {})
    if "val/accuracy" not in warm or not base:
        return None
    return precondition.check(
        warm["val/accuracy"], values(base, "val/accuracy"),
        {s: m["_curves"][SAMPLED] for s, m in base.items() if SAMPLED in m.get("_curves", {})},
        math.nan if chance is None else chance, warm.get("val/accuracy_no_image"),
        values(base, "val/accuracy_no_image"))


def values(runs: dict[int, dict], key: str) -> dict[int, float]:
    return {s: float(m[key]) for s, m in runs.items() if key in m and np.isfinite(float(m[key]))}


def quantities(data: dict[str, dict[int, dict]]) -> dict[str, str]:
    """:data:`QUANTITIES` plus the evidence ratio of every layer the runs measured."""
    layers = sorted({int(k.rsplit("L", 1)[1]) for runs in data.values() for m in runs.values() for k in m
                     if k.startswith("val/evidence_ratio_L")})
    return QUANTITIES | {f"val/evidence_ratio_L{k}": f"evidence ratio, layer {k}" for k in layers}


def summary(data: dict[str, dict[int, dict]]) -> list[dict]:
    base = data.get(BASELINE, {})
    rows = []
    for config, runs in data.items():
        if config == "warmstart":
            continue
        for key in quantities(data):
            v = values(runs, key)
            if not v:
                continue
            mean, lo, hi = bootstrap_ci(list(v.values()))
            d = paired(v, values(base, key)) if config != BASELINE else {"n": 0}
            rows.append({"config": config, "quantity": key, "n": len(v), "mean": mean, "lo": lo, "hi": hi,
                         "delta": d.get("mean", math.nan), "delta_lo": d.get("lo", math.nan),
                         "delta_hi": d.get("hi", math.nan), "p": d.get("p", math.nan),
                         "p_t": d.get("p_t", math.nan), "paired_n": d["n"]})
    return rows


def _mean(v: dict[int, float]) -> float:
    return float(np.mean(list(v.values()))) if v else math.nan


def _testable(arm: str, quantity: str, data) -> str | None:
    """Why a claim cannot be tested at this scale (None: testable). Measured on the arm's
    runs, else on dapo's (every run measures every method's target).
    """
    runs = data.get(arm) or data.get(BASELINE, {})
    length = _mean(values(runs, "val/response_length"))
    if arm == "dapo+vgpo" and np.isfinite(length) and length < MIN_CHAIN:
        return f"responses are {length:.1f} tokens: no reasoning chain for attention to fade over"
    if arm == "dapo+atrl":
        k = _mean(values(runs, "val/atrl/clusters_per_response"))
        if np.isfinite(k) and k <= 1.0:
            return f"{k:.1f} cluster per response (responses {length:.1f} tokens <= cluster_size 16): every weight is 1"
    return None


def verdict(row: dict | None, sign: int, why_not: str | None) -> str:
    """``supported`` needs the bootstrap CI of the paired change to exclude 0 in the
    predicted direction AND the paired t-test p < 0.05 (a bootstrap CI over 3-5 seeds is
    too narrow to stand alone); a CI that excludes 0 without that is ``weak evidence``.
    """
    if why_not:
        return f"not testable at this scale ({why_not})"
    if row is None:
        return "not run"
    if row["paired_n"] < 3:
        return f"{row['paired_n']} paired seed(s): too few to test"
    floor = 2 / 2 ** row["paired_n"]
    lo, hi, p_t = row["delta_lo"], row["delta_hi"], row.get("p_t", math.nan)
    tail = (f"sign-flip p = {row['p']:.3g} (the smallest possible with {row['paired_n']} seeds is {floor:.3g}), "
            f"paired t-test p = {p_t:.2g}")
    strong = np.isfinite(p_t) and p_t < 0.05
    if (sign > 0 and lo > 0) or (sign < 0 and hi < 0):
        if strong:
            return f"supported at this scale (95% CI of the change excludes 0; {tail})"
        return f"weak evidence for (95% CI excludes 0 but t-test p >= 0.05; {tail})"
    if (sign > 0 and hi < 0) or (sign < 0 and lo > 0):
        word = "contradicted: moved the other way" if strong else "weak evidence against: moved the other way"
        return f"{word} ({tail})"
    return f"not supported: no detectable change (95% CI includes 0; {tail})"


def _fmt(m, lo, hi, digits=3) -> str:
    return "n/a" if not np.isfinite(m) else f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def figures(data, results: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warm = next(iter(data.get("warmstart", {}).values()), {})
    arms = study.configurations()
    out = {}
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    for row, (group, label) in enumerate((("ease_dose", "EASE λ"), ("sayo_dose", "SAYO reward weight"))):
        names = [BASELINE] + [n for n, a in arms.items() if a.group == group]
        for col, key in enumerate(("val/ease/evidence_ratio" if group == "ease_dose" else "val/sayo/region_ratio",
                                   "val/accuracy")):
            ax = axes[row, col]
            pts = [(arms[n].dose or 0.0, *bootstrap_ci(values(data.get(n, {}), key).values())) for n in names]
            pts = [p for p in pts if np.isfinite(p[1])]
            if pts:
                x, m, lo, hi = (np.array(c) for c in zip(*pts, strict=True))
                ax.errorbar(x, m, yerr=[m - lo, hi - m], marker="o", capsize=3)
            if key in warm:
                ax.axhline(warm[key], ls="--", c="grey", label="warm start")
                ax.legend(fontsize=7)
            doses = [arms[n].dose or 0.0 for n in names]
            lin = min(d for d in doses if d > 0) if any(d > 0 for d in doses) else 1e-3
            ax.set_xscale("symlog", linthresh=lin)
            ax.set_xlim(-0.3 * lin, 1.6 * max(doses + [lin]))
            ax.set_xlabel(f"{label} (0 = dapo)")
            ax.set_title(QUANTITIES[key], fontsize=8)
    fig.suptitle("dose-response (mean, bootstrap 95% CI over seeds; held-out images)", fontsize=9)
    fig.tight_layout()
    out["dose_response"] = results / "dose_response.png"
    fig.savefig(out["dose_response"], dpi=90)
    plt.close(fig)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, runs in data.items():
        keys = sorted((k for k in next(iter(runs.values())) if k.startswith("val/evidence_ratio_L")),
                      key=lambda k: int(k.rsplit("L", 1)[1]))
        if keys:
            ax1.plot(range(len(keys)), [np.mean(list(values(runs, k).values()) or [np.nan]) for k in keys],
                     marker="o", label=name)
        curve = [np.mean(list(values(runs, f"val/vgpo/focus_pos{b:02d}").values()) or [np.nan]) for b in range(BINS)]
        ax2.plot((np.arange(BINS) + 0.5) / BINS, curve, marker=".", label=name)
    ax1.set(xlabel="decoder layer", title="evidence ratio per layer (held-out; mean over seeds)")
    ax2.set(xlabel="relative response position", title="visual focus by position (VGPO's cosine)")
    ax1.axhline(1.0, c="grey", ls=":")
    ax1.legend(fontsize=6)
    for ax in (ax1, ax2):
        ax.title.set_fontsize(8)
    fig.tight_layout()
    out["layers_and_forgetting"] = results / "layers_and_forgetting.png"
    fig.savefig(out["layers_and_forgetting"], dpi=90)
    plt.close(fig)
    return out


def build(results: Path, label: str = "", chance: float | None = None) -> Path:
    """Write the report under ``results``; returns the README path. ``chance``: the task's
    chance accuracy, for the precondition's no-image part (None: that part fails).
    """
    results = Path(results)
    data = load(results)
    rows = summary(data)
    pre = learning(data, chance)
    refused = precondition.refusal(pre)
    tmp = results / "summary.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(results / "summary.json")
    tmp = results / "precondition.json.tmp"
    tmp.write_text(json.dumps(pre, indent=1) + "\n")
    tmp.replace(results / "precondition.json")
    figs = figures(data, results) if data else {}
    index = {(r["config"], r["quantity"]): r for r in rows}
    steps = sorted({m.get("_steps") for c, runs in data.items() if c != "warmstart" for m in runs.values()} - {None})
    seeds = sorted({s for c, runs in data.items() if c != "warmstart" for s in runs})
    lines = [f"# Mechanism study report{f' — {label}' if label else ''}", "",
             f"{sum(len(r) for c, r in data.items() if c != 'warmstart')} runs, "
             f"{len(data) - ('warmstart' in data)} arms, "
             f"seeds {seeds}, {steps} RL steps each. Every quantity is measured on held-out validation images at the "
             "end of training (greedy answers). Mean [bootstrap 95% CI over seeds]; Δ = paired difference from dapo "
             "on the same seeds [bootstrap 95% CI], p = exact two-sided sign-flip test and paired t-test.", "",
             "## Learning precondition", "",
             ("**Met**: accuracy claims are tested below. " if pre and pre["met"] else
              f"**Not met**: accuracy claims are {refused}. ")
             + (precondition.describe(pre) if pre else ""), "",
             "## Claims", "", "| claim | arm | measured | Δ vs dapo [95% CI] | verdict |", "|---|---|---|---|---|"]
    # a claim whose arm did not run is left out unless dapo's runs already make it untestable
    not_run = sorted({arm for _, arm, key, _ in CLAIMS if arm not in data and _testable(arm, key, data) is None})
    for claim, arm, key, sign in CLAIMS:
        if arm in not_run:
            continue
        r = index.get((arm, key))
        measured = "n/a" if r is None else _fmt(r["mean"], r["lo"], r["hi"])
        delta = "n/a" if r is None else _fmt(r["delta"], r["delta_lo"], r["delta_hi"])
        word = refused if key == "val/accuracy" and refused else verdict(r, sign, _testable(arm, key, data))
        lines.append(f"| {claim} | {arm} | {QUANTITIES[key]}: {measured} | {delta} | {word} |")
    if not_run:
        lines += ["", f"Arms of the other claims, not run on this testbed: {', '.join(not_run)}."]
    warm = next(iter(data.get("warmstart", {}).values()), {})
    lines += ["", "## Every arm", ""]
    for key, title in quantities(data).items():
        sub = [r for r in rows if r["quantity"] == key]
        if not sub:
            continue
        w = f" (warm start {warm[key]:.3f})" if key in warm else ""
        lines += [f"### {title}{w}", "", "| arm | n | mean [95% CI] | Δ vs dapo [95% CI] | p sign-flip | p t-test |",
                  "|---|---|---|---|---|---|"]
        for r in sub:
            d = "—" if r["config"] == BASELINE else _fmt(r["delta"], r["delta_lo"], r["delta_hi"])
            p = "—" if r["config"] == BASELINE else f"{r['p']:.3g}"
            pt = "—" if r["config"] == BASELINE else f"{r.get('p_t', math.nan):.2g}"
            lines.append(f"| {r['config']} | {r['n']} | {_fmt(r['mean'], r['lo'], r['hi'])} | {d} | {p} | {pt} |")
        lines.append("")
    for name, path in figs.items():
        lines += [f"![{name}]({path.name})", ""]
    out = results / "README.md"
    tmp = results / "README.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    return out
