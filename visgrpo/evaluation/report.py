"""Evaluation outputs: the results table (markdown + CSV), per-item predictions (JSONL),
the benchmarks that failed and why, all written atomically, and the MLflow run (one metric
per benchmark and category).

Each row names how answers were extracted (``rules``, or ``judge:<model>`` with
``--judge``), so a table never hides which protocol produced it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

from visgrpo.evaluation.runner import ItemResult

COLUMNS = ("benchmark", "category", "n", "accuracy", "extraction")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def markdown_table(rows: list[dict], protocol: str, failures: dict[str, str] | None = None) -> str:
    """The table; failed benchmarks are listed under it with their one-line reason."""
    lines = [f"| benchmark | category | n | accuracy ({protocol}, %) | extraction |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['category']} | {r['n']} | {100 * r['accuracy']:.1f} "
              f"| {r.get('extraction', 'rules')} |" for r in rows]
    if failures:
        lines += ["", f"Failed ({len(failures)}): no result for these benchmarks.", ""]
        lines += [f"- {name}: {why}" for name, why in failures.items()]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict], protocol: str) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, "protocol", "metric"], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r.get(k, "rules") for k in COLUMNS}, "protocol": protocol,
                         "metric": r.get("metric") or "accuracy"})
    return buf.getvalue()


def predictions_jsonl(benchmark: str, results: list[ItemResult]) -> str:
    lines = []
    for r in results:
        rec = {"benchmark": benchmark, "id": r.item.id, "category": r.item.category,
               "answer": r.item.answer, "score": r.score, "scores": r.scores,
               "completions": r.completions}
        if r.extractions is not None:
            rec["extractions"] = r.extractions
        lines.append(json.dumps(rec, ensure_ascii=False, default=str))
    return "\n".join(lines) + "\n" if lines else ""


def write_outputs(out: Path, rows: list[dict], predictions: dict[str, list[ItemResult]],
                  protocol: str, failures: dict[str, str] | None = None) -> list[Path]:
    """``OUT/results.md``, ``OUT/results.csv`` and ``OUT/predictions.jsonl`` (benchmarks
    in the order given), plus ``OUT/failures.json`` when some failed.
    """
    out = Path(out)
    paths = [out / "results.md", out / "results.csv", out / "predictions.jsonl"]
    texts = [markdown_table(rows, protocol, failures), csv_table(rows, protocol),
             "".join(predictions_jsonl(b, r) for b, r in predictions.items())]
    if failures:
        paths.append(out / "failures.json")
        texts.append(json.dumps(failures, indent=1, ensure_ascii=False) + "\n")
    else:
        (out / "failures.json").unlink(missing_ok=True)
    for path, text in zip(paths, texts, strict=True):
        write_atomic(path, text)
    return paths


def metric_name(row: dict) -> str:
    """``mathvista_testmini/acc``, ``mathvista_testmini/float/acc``, or for a composite
    metric its name (``pope/adversarial/f1``, ``hallusionbench/qAcc``) (MLflow-safe).
    """
    if row.get("metric"):
        parts = [row["benchmark"], *str(row["metric"]).split("/")]
        return "/".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)
    parts = [row["benchmark"]] + ([] if row["category"] == "all" else [row["category"]])
    return "/".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts) + "/acc"


def log_mlflow(rows: list[dict], params: dict, tracking_uri: str, experiment: str,
               run_name: str | None, artifacts: list[Path]) -> str:
    """Log one metric per row, the run's parameters and the output files; return the run id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({metric_name(r): float(r["accuracy"]) for r in rows})
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="eval")
        return run.info.run_id
