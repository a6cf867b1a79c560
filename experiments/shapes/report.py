"""The shapes report: markdown + PNG plots written from the MLflow runs (not from log files).

``python -m experiments.shapes.report --tracking-uri sqlite:///mlflow.db --out experiments/shapes/results``

Reads the finished runs of the MLflow experiment ``shapes_rl`` tagged ``study=<study>``
(``method`` and ``seed`` tags; ``method=warmstart`` is the validation of the starting
checkpoint), and writes ``README.md`` (headline table: final validation accuracy mean +/- std
over seeds per method, delta vs ``dapo``), ``table.csv`` and figures: validation accuracy,
training reward, evidence attention ratio, response length, visual attention by response
position, and attention overlays before/after RL on fixed validation images. If the store
also holds the SFT run (experiment ``shapes_sft``), its accuracy curve is plotted too.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
from pathlib import Path

from experiments.shapes import plots, recipe
from experiments.shapes.runs import RunData, by_method, client_for, load_runs, mean_std

KEYS = [
    "val/accuracy", "val/reward", "val/evidence_ratio", "val/response_length", "val/ease/evidence_ratio",
    "reward/first_round/outcome", "reward/first_round/accuracy", "reward/filtered/total", "diag/evidence_ratio",
    "rollout/response_length",
    *[f"val/visual_mass_pos{k:02d}" for k in range(10)],
]
BASELINE = "dapo"
TRAIN_WINDOW = 5  # moving-average window of the per-step training curves
EDGE = 10  # training accuracy "first" / "last" = mean over the first / last EDGE steps


def fmt(mean: float, std: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def headline(groups: dict[str, list[RunData]], start_acc: float, start_ease: float = math.nan) -> list[dict]:
    """One row per method: final val accuracy (mean, std over seeds), delta vs dapo, and more."""
    base = mean_std(r.last("val/accuracy") for r in groups.get(BASELINE, []))[0]
    rows = []
    for method, runs in groups.items():
        acc, acc_sd, n = mean_std(r.last("val/accuracy") for r in runs)
        first, first_sd, _ = mean_std(_edge_mean(r, "reward/first_round/accuracy", head=True) for r in runs)
        last, last_sd, _ = mean_std(_edge_mean(r, "reward/first_round/accuracy", head=False) for r in runs)
        ev, ev_sd, _ = mean_std(r.last("val/evidence_ratio") for r in runs)
        ln, ln_sd, _ = mean_std(r.last("val/response_length") for r in runs)
        ez, ez_sd, _ = mean_std(r.last("val/ease/evidence_ratio") for r in runs)
        rows.append({
            "method": method, "seeds": n, "val_acc_start": start_acc, "val_acc": acc, "val_acc_std": acc_sd,
            "delta_vs_dapo": acc - base if math.isfinite(base) else math.nan,
            "seeds_above_start": sum(r.last("val/accuracy") > start_acc for r in runs),
            "train_acc_first": first, "train_acc_first_std": first_sd,
            "train_acc_last": last, "train_acc_last_std": last_sd,
            "val_evidence_ratio": ev, "val_evidence_ratio_std": ev_sd, "val_response_length": ln,
            "val_response_length_std": ln_sd,
            "ease_ratio_start": start_ease, "val_ease_evidence_ratio": ez, "val_ease_evidence_ratio_std": ez_sd,
        })
    return rows


def _edge_mean(run: RunData, key: str, head: bool, k: int = EDGE) -> float:
    """Mean of the first (``head``) or last ``k`` logged values (one step's 64 sampled
    responses are a noisy estimate).
    """
    h = run.histories.get(key)
    if h is None or not len(h[1]):
        return math.nan
    return float((h[1][:k] if head else h[1][-k:]).mean())


def verdicts(rows: list[dict]) -> list[str]:
    """Plain statements per method vs dapo: a difference counts only when it exceeds the larger std."""
    base = next((r for r in rows if r["method"] == BASELINE), None)
    if base is None:
        return []
    out = []
    for r in rows:
        if r["method"] == BASELINE or not math.isfinite(r["delta_vs_dapo"]):
            continue
        noise = max(r["val_acc_std"], base["val_acc_std"])
        d = r["delta_vs_dapo"]
        if r["seeds"] < 2 or base["seeds"] < 2:
            word = "single seed, no conclusion"
        elif abs(d) <= noise:
            word = "no clear difference (within one std over seeds)"
        else:
            side = "above" if d > 0 else "below"
            word = (f"{side} dapo by more than one std over seeds ({r['seeds']} vs {base['seeds']} seeds: "
                    "a hint, not a significance test)")
        out.append(f"- **{r['method']}**: {d:+.3f} final validation accuracy vs dapo: {word}.")
    return out


def _table_md(rows: list[dict]) -> list[str]:
    lines = [
        f"| method | seeds | val acc (warm start) | final val acc | seeds above warm start | Δ vs dapo | "
        f"train acc, first {EDGE} steps | train acc, last {EDGE} steps | val evidence ratio (last layer) | "
        "val response length | val evidence ratio at EASE's layer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        start = "n/a" if not math.isfinite(r["val_acc_start"]) else f"{r['val_acc_start']:.3f}"
        delta = ("—" if r["method"] == BASELINE or not math.isfinite(r["delta_vs_dapo"])
                 else f"{r['delta_vs_dapo']:+.3f}")
        lines.append(
            f"| {r['method']} | {r['seeds']} | {start} | {fmt(r['val_acc'], r['val_acc_std'])} | "
            f"{r['seeds_above_start']}/{r['seeds']} | {delta} | "
            f"{fmt(r['train_acc_first'], r['train_acc_first_std'])} | "
            f"{fmt(r['train_acc_last'], r['train_acc_last_std'])} | "
            f"{fmt(r['val_evidence_ratio'], r['val_evidence_ratio_std'], 2)} | "
            f"{fmt(r['val_response_length'], r['val_response_length_std'], 1)} | "
            f"{fmt(r['val_ease_evidence_ratio'], r['val_ease_evidence_ratio_std'], 2)} |"
        )
    return lines


def write_csv(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def overlays(client, groups: dict[str, list[RunData]], out: Path, num_images: int = 4) -> Path | None:
    """Before/after attention overlays of seed 0 of each method, from the runs' artifacts."""
    columns: list[tuple[str, list[Path]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, runs in groups.items():
            run = min(runs, key=lambda r: r.seed)
            try:
                local = Path(client.download_artifacts(run.run_id, "attention", tmp + f"/{method}"))
            except Exception:  # noqa: BLE001 (a run without overlays simply has no column)
                continue
            before = sorted(local.glob("step000000_img*.png"))[:num_images]
            after = sorted(local.glob("final_img*.png"))[:num_images]
            if not columns and before:
                columns.append(("before RL (warm start)", before))
            columns.append((f"after: {method} (seed {run.seed})", after))
        return plots.overlay_grid(columns, out)


def sft_figure(client, out: Path) -> Path | None:
    """Validation accuracy of the SFT warm-start run(s), if the store has them."""
    exp = client.get_experiment_by_name("shapes_sft")
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    if not runs:
        return None
    r = runs[0]
    data = RunData(r.info.run_id, "sft", 0)
    import numpy as np

    for key in ("val/accuracy",):
        hist = sorted(client.get_metric_history(r.info.run_id, key), key=lambda m: m.step)
        data.histories[key] = (np.array([m.step for m in hist]), np.array([m.value for m in hist]))
    return plots.curves_figure({"SFT": [data]}, [("val/accuracy", "SFT warm start: validation accuracy", 1)], out,
                               xlabel="SFT step", refs={"chance (1/6)": 1 / 6})


def build_report(tracking_uri: str, out: Path, study: str = "full", experiment: str = "shapes_rl") -> dict:
    """Write the report to ``out``; returns ``{"rows": headline rows, "figures": {name: path}}``."""
    client = client_for(tracking_uri)
    runs = load_runs(client, experiment, study, KEYS)
    if not runs:
        raise SystemExit(f"no finished runs tagged study={study!r} in experiment {experiment!r} of {tracking_uri}")
    groups = by_method(runs)
    warm = groups.pop("warmstart", [])
    order = [m for m in recipe.METHODS if m in groups]
    groups = {m: groups[m] for m in order + sorted(set(groups) - set(order))}
    start = {k: warm[0].last(k) for k in ("val/accuracy", "val/evidence_ratio", "val/response_length",
                                          "val/ease/evidence_ratio")} if warm else {}
    rows = headline(groups, start.get("val/accuracy", math.nan), start.get("val/ease/evidence_ratio", math.nan))
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "accuracy": plots.curves_figure(groups, [("val/accuracy", "validation accuracy (greedy)", 1),
                                                 ("reward/first_round/accuracy", "training accuracy (sampled)",
                                                  TRAIN_WINDOW)],
                                        out / "accuracy.png", start),
        "reward": plots.curves_figure(groups, [("reward/first_round/outcome", "training outcome reward", TRAIN_WINDOW),
                                               ("reward/filtered/total",
                                                "total reward after filtering (incl. SAYO bonus)", TRAIN_WINDOW)],
                                      out / "reward.png"),
        "evidence_ratio": plots.curves_figure(groups, [("val/ease/evidence_ratio",
                                                        "evidence ratio at EASE's layer (validation)", 1),
                                                       ("val/evidence_ratio",
                                                        "evidence ratio, last layer (validation)", 1),
                                                       ("diag/evidence_ratio",
                                                        "evidence ratio, last layer (training)", TRAIN_WINDOW)],
                                              out / "evidence_ratio.png", start),
        "response_length": plots.curves_figure(groups, [("rollout/response_length", "rollout response length",
                                                         TRAIN_WINDOW),
                                                        ("val/response_length", "validation response length", 1)],
                                               out / "response_length.png", start),
        "visual_mass_by_position": plots.position_figure(groups, out / "visual_mass_by_position.png", warm),
        "overlays": overlays(client, groups, out / "attention_overlays.png"),
        "sft": sft_figure(client, out / "sft_accuracy.png"),
    }
    figs = {k: v for k, v in figs.items() if v is not None}
    write_csv(rows, out / "table.csv")
    lines = [f"# Shapes experiment results (study `{study}`)", "",
             f"Generated by `python -m experiments.shapes.report` from the MLflow store `{tracking_uri}` "
             f"(experiment `{experiment}`, {len(runs)} finished runs). Mean ± sample std (ddof=1) over seeds; "
             "final = last validation of each run (200 held-out prompts, greedy); training accuracy is the mean "
             f"over the sampled responses of the first / last {EDGE} RL steps.", "", *_table_md(rows), ""]
    lines += ["## Per method, against dapo", "", *(verdicts(rows) or ["- (no dapo baseline in this study)"]), ""]
    for name, path in figs.items():
        lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({path.name})", ""]
    tmp = out / "README.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out / "README.md")
    return {"rows": rows, "figures": figs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the shapes report from the MLflow runs.")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--out", default="runs/shapes/results")
    parser.add_argument("--study", default="full", help="the runs' study tag (full or demo)")
    parser.add_argument("--experiment", default="shapes_rl")
    args = parser.parse_args(argv)
    res = build_report(args.tracking_uri, Path(args.out), args.study, args.experiment)
    for r in res["rows"]:
        print(f"{r['method']:>10}: final val acc {fmt(r['val_acc'], r['val_acc_std'])} (n={r['seeds']})")
    print(f"report written to {Path(args.out) / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
