"""Paper suites: the benchmarks a paper reports, printed in that paper's column order.

``visgrpo eval --suite papo`` evaluates the suite's benchmarks found under
``--data-root`` and prints one row in the paper's columns, so a model can be set beside
the paper's row. A column reads the evaluation's table rows (``{benchmark, category, n,
accuracy}``, composite metrics with a ``metric`` key):

* the benchmark's overall accuracy (``category == "all"``);
* ``categories``: the item-weighted accuracy over those categories (a subset such as
  MathVista's multiple-choice questions);
* ``metric``: a composite metric row (MMMU-Pro's ``overall``, CV-Bench's ``overall``).

A column no visgrpo benchmark reproduces, or whose benchmark was not run, prints ``n/a``
with a footnote saying why; ``Avg`` is the mean of the columns that have a value (the
header says over how many). Where the columns come from, and what differs from the
paper's own evaluation, is in each suite's ``source`` and ``notes`` (see also
``docs/evaluation.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Column:
    """One column of a paper's table."""

    label: str
    benchmark: str | None = None
    categories: tuple[str, ...] = ()
    metric: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Suite:
    """A paper's evaluation table: its columns in order, protocol and provenance."""

    name: str
    title: str
    source: str
    protocol: str
    columns: tuple[Column, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def benchmarks(self) -> list[str]:
        """The visgrpo benchmarks the suite runs, in column order, once each."""
        return list(dict.fromkeys(c.benchmark for c in self.columns if c.benchmark))


_MMK12 = Column("MMK12", "mmk12",
                note="FanqingM/MMK12 test (2,000 items); PAPO and VGPO evaluate a processed copy "
                     "(PAPOGalaxy/PAPO_MMK12_test), VPPO its own; scored by option letter")
_MATHVERSE_V = Column(
    "MathVerse_V", "mathverse_testmini", categories=("Vision Dominant", "Vision Only"),
    note="approximated by testmini's Vision Dominant + Vision Only versions; the paper's "
         "own vision-dependent subset list is not published with the code")
_MMMU_PRO = Column("MMMU-Pro", "mmmu_pro", metric="overall",
                   note="MMMU-Pro's headline (standard 10 options + vision) / 2; the authors' "
                        "processed copy may use one setting")

SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite(
        "papo", "PAPO: Perception-Aware Policy Optimization (arXiv 2507.06448)",
        "MikeWangWZHL/PAPO README, 'Evaluation Data' (general, then vision-dependent)",
        "avg@8 at temperature 1.0 (README: 'average accuracy @ 8')",
        (Column("Geo3K", "geometry3k"),
         Column("MathVista", "mathvista_testmini", categories=("multi_choice",),
                note="multiple-choice questions only, as PAPO filters free-form ones"),
         Column("We-Math", "wemath"),
         _MMK12,
         Column("MathVerse", "mathverse_testmini",
                note="all testmini questions; PAPO keeps multiple-choice ones only, which "
                     "testmini's categories (problem versions) cannot select"),
         Column("LogicVista", "logicvista"),
         Column("SuperClevr", "clevr_count",
                note="BUAADreamer/clevr_count_70k test, the set PAPO's README lists"),
         _MMMU_PRO, _MATHVERSE_V),
        ("Column order follows the README's benchmark list; the paper's Table 1 order was "
         "not verified against the PDF.",),
    ),
    Suite(
        "vppo", "VPPO: Spotlight on Token Perception (arXiv 2510.09285)",
        "huaixuheqing/VPPO-RL README, 'Evaluation Data' table",
        "avg@8 at temperature 1.0 (README)",
        (Column("Geo3k", "geometry3k"), Column("We-Math", "wemath"), _MMK12,
         Column("MathVerse", "mathverse_testmini",
                note="VPPO filters MathVerse to exact-match items (their VPPO-Eval copy)"),
         Column("MathVision", "mathvision",
                note="VPPO filters MathVision to exact-match items (their VPPO-Eval copy)"),
         Column("DynaMath", "dynamath",
                note="all 10 variants, average case; VPPO filters DynaMath (VPPO-Eval copy)"),
         Column("LogicVista", "logicvista"), _MMMU_PRO),
        ("Column order follows the README table; the paper's table order was not verified.",),
    ),
    Suite(
        "vgpo", "VGPO: Visually-Guided Policy Optimization (ACL 2026)",
        "wzb-bupt/VGPO README, 'Supported Evaluation Benchmarks'",
        "greedy (README: temperature 0.0, Look-Back's evaluation scripts)",
        (Column("MathVista", "mathvista_testmini"), Column("MathVerse", "mathverse_testmini"),
         Column("WeMath", "wemath"), _MMK12,
         Column("GeoMath", note="GeoMath has no visgrpo loader"),
         Column("Geometry3K", "geometry3k"), Column("LogicVista", "logicvista"),
         Column("SuperClevr Counting", "clevr_count",
                note="the clevr_count_70k test set PAPO released; VGPO's copy is not named"),
         _MMMU_PRO, _MATHVERSE_V),
        ("Column order follows the README list; the paper's table was not verified.",),
    ),
    Suite(
        "sayo", "SAYO: Do MLLMs Really See It (arXiv 2602.08241)",
        "Cratileo/Sayo eval/script/qwen.sh (dataset list) and eval/score.py",
        "temperature 0.1, top-p 0.1 (eval/script/qwen.sh); use --protocol greedy",
        (Column("CharXiv", note="CharXiv has no visgrpo loader (reasoning questions)"),
         Column("M3CoT", note="M3CoT has no visgrpo loader"),
         Column("MathVision", "mathvision"),
         Column("MME-RealWorld", note="MME-RealWorld-Lite has no visgrpo loader"),
         Column("WeMath", "wemath"),
         Column("AI2D", note="AI2D has no visgrpo loader"),
         Column("V*", note="V* Bench has no visgrpo loader"),
         Column("ChartQA", "chartqa"), Column("MMStar", "mmstar"),
         Column("MathVista", "mathvista_testmini"), Column("MathVerse", "mathverse_testmini"),
         Column("HallusionBench", "hallusionbench")),
        ("The paper's table order was not found; columns follow the dataset list of "
         "eval/script/qwen.sh, then the other benchmarks eval/score.py scores.",
         "SAYO scores every benchmark with one lenient rule (eval/score.py accuracy_reward: "
         "boxed / <answer> / 'Answer:' extraction, mathruler, math-verify, letter "
         "containment); visgrpo uses each benchmark's official rules, so numbers can differ."),
    ),
    Suite(
        "ease", "EASE: Evidence-Anchored Spatial Attention (arXiv 2605.30912)",
        "the paper's abstract and its benchmark listing (wizwand.com paper page)",
        "not stated in the public record; greedy is the default",
        (Column("WeMath", "wemath"), Column("MathVista", "mathvista_testmini"), _MATHVERSE_V,
         _MMK12, Column("LogicVista", "logicvista"), Column("Geo3K", "geometry3k"),
         Column("perception / hallucination",
                note="the abstract names perception and hallucination benchmarks whose "
                     "names were not found in the public record")),
        ("Only six of the paper's columns are known by name; their order here is not the "
         "paper's.",),
    ),
    Suite(
        "atrl", "AT-RL: Credit Where It is Due (arXiv 2602.11455)",
        "the paper's abstract (no code released)",
        "not stated in the public record; greedy is the default",
        (Column("MathVista", "mathvista_testmini"),
         Column("STEM / video / general",
                note="the abstract reports STEM, video and general benchmarks without "
                     "naming them; only MathVista (80.2 at 32B) is named")),
        ("Only MathVista is named in the public record.",),
    ),
)}


def column_value(column: Column, rows: list[dict]) -> float | None:
    """The column's value in [0, 1] from the table rows, or ``None`` when absent."""
    mine = [r for r in rows if r["benchmark"] == column.benchmark]
    if column.benchmark is None or not mine:
        return None
    if column.metric:
        hits = [r for r in mine if r.get("metric") == column.metric
                or (r.get("metric") is None and r["category"] == column.metric)]
        return float(hits[0]["accuracy"]) if hits else None
    if column.categories:
        hits = [r for r in mine if r["category"] in column.categories and not r.get("metric")]
        n = sum(r["n"] for r in hits)
        return sum(r["accuracy"] * r["n"] for r in hits) / n if n else None
    overall = [r for r in mine if r["category"] == "all" and not r.get("metric")]
    return float(overall[0]["accuracy"]) if overall else None


def suite_table(suite: Suite, rows: list[dict], protocol: str) -> str:
    """The suite as a markdown table (percent, one decimal) with its footnotes."""
    values = [column_value(c, rows) for c in suite.columns]
    have = [v for v in values if v is not None]
    marks, notes = [], []
    for column, value in zip(suite.columns, values, strict=True):
        note = column.note
        if value is None and column.benchmark:
            ran = any(r["benchmark"] == column.benchmark for r in rows)
            missing = (f"{column.benchmark}'s {column.metric or 'categories'} not in this run's "
                       "results" if ran else f"{column.benchmark} was not evaluated in this run")
            note = "; ".join(filter(None, [note, missing]))
        if note:
            notes.append(note)
        marks.append(f" [{len(notes)}]" if note else "")
    header = [f"{c.label}{m}" for c, m in zip(suite.columns, marks, strict=True)]
    header.append(f"Avg ({len(have)}/{len(values)})")
    cells = ["n/a" if v is None else f"{100 * v:.1f}" for v in values]
    cells.append(f"{100 * sum(have) / len(have):.1f}" if have else "n/a")
    lines = [f"{suite.title}: this model ({protocol}; the paper: {suite.protocol})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             "| " + " | ".join(cells) + " |", ""]
    lines += [f"[{k}] {n}" for k, n in enumerate(notes, start=1)]
    lines += [f"Note: {n}" for n in suite.notes]
    lines.append(f"Columns from: {suite.source}.")
    return "\n".join(lines) + "\n"


def suite_benchmarks(name: str, data_root: str | None) -> list[str]:
    """The suite's benchmarks that have a folder under ``data_root`` (one line when
    ``--data-root`` is missing or holds none of them).
    """
    suite = get_suite(name)
    if not data_root:
        raise ValueError(f"--suite {name}: needs --data-root (one folder per benchmark: "
                         f"{', '.join(suite.benchmarks)})")
    found = [b for b in suite.benchmarks if (Path(data_root) / b).exists()]
    if not found:
        raise FileNotFoundError(f"--suite {name}: none of {', '.join(suite.benchmarks)} "
                                f"is a folder under {data_root}")
    return found


def get_suite(name: str) -> Suite:
    """The suite named ``name`` (one line listing the valid ones otherwise)."""
    if name not in SUITES:
        raise ValueError(f"--suite {name!r}: unknown; valid: {', '.join(SUITES)}")
    return SUITES[name]
