"""Every document or file the repository points to exists in the repository.

Scans the repository's ``*.py``, ``*.md``, ``*.yaml``, ``*.yml`` and ``*.toml`` files for
references to files and checks each one exists, relative to the repository root or to
the referring file:

* markdown links and images (a bracketed text followed by a parenthesised target that
  is not a URL or a pure ``#anchor``); an ``#anchor`` into a markdown file must match
  one of its headings;
* repo-relative paths with a directory part and an extension among md, yaml, yml, py,
  json, png (``docs/methods.md``, ``configs/credit/sayo.yaml``, ``data_tools/grid.py``);
* bare markdown file names (``README.md``).

In Python files only comments and docstrings are read: string literals in code are data
(paths relative to a base the code chooses), not references for a reader. A path
resolves relative to the repository root, the referring file's directory or any
directory between the two. Placeholders (``<name>``, ``{x}``, ``*``, ``$VAR``, ``...``,
an all-capitals directory such as ``OUT/``), URLs and absolute paths are not references.
Files that runs or the data tools write are listed in ``GENERATED``, and examples that
are relative to another base in ``EXAMPLES``, each with its reason. The specification
documents that are not shipped must not be named at all.
"""

from __future__ import annotations

import io
import os
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml"}
SKIP_DIRS = {".git", "runs", "mlruns", "__pycache__", ".venv", "venv", "build", "dist", "node_modules"}
EXTENSIONS = ("md", "yaml", "yml", "py", "json", "png")

#: Files that runs or tools create (a path prefix, or a file name anywhere), with the reason.
GENERATED = {
    "runs/": "default_root_dir of every config and of the demo: checkpoints, reports, plots",
    "mlruns/": "MLflow's file store when a run uses it",
    "visgrpo_meta.json": "written beside every dataset by visgrpo-data (data_tools' I/O)",
    "results.md": "written into OUT/ by visgrpo eval (and into runs/ by the studies)",
}
#: Files of other repositories or downloads that the code cites as its source (a scorer's
#: transcription, a dataset's layout): reference -> where it lives. Only these may dangle.
EXTERNAL = {
    "evaluation/extract_answer.py": "lupantech/MathVista (and ZrrSkywalker/MathVerse)",
    "evaluation/calculate_score.py": "lupantech/MathVista",
    "evaluation/prompts/ext_ans.py": "lupantech/MathVista",
    "evaluation/utils.py": "lupantech/MathVista, mathllm/MATH-V",
    "models/gpt.py": "lupantech/MathVista",
    "evaluation/prompts.py": "ZrrSkywalker/MathVerse",
    "evaluation/extract_answer_s1.py": "ZrrSkywalker/MathVerse",
    "evaluation/score_answer_s2.py": "ZrrSkywalker/MathVerse",
    "evaluation/four_dimensional_metrics.py": "We-Math/We-Math",
    "2steps/image/1-1.png": "a file inside the We-Math download (testmini.zip)",
    "data/dataset.json": "Yijia-Xiao/LogicVista",
    "eval/extract_accuracy_new.py": "Yijia-Xiao/LogicVista",
    "eval/analyze_accuracy.py": "Yijia-Xiao/LogicVista",
    "vlmeval/dataset/utils/yorn.py": "open-compass/VLMEvalKit",
    "evaluation/evaluate.py": "mathllm/MATH-V",
    "infer/infer_transformers.py": "MMMU-Benchmark/MMMU (mmmu-pro)",
    "mmmu/utils/eval_utils.py": "MMMU-Benchmark/MMMU",
    "mmmu-pro/prompts.yaml": "MMMU-Benchmark/MMMU",
    "mmmu-pro/evaluate.py": "MMMU-Benchmark/MMMU",
    "pix2struct/metrics.py": "google-research/pix2struct",
    "chartqa/utils.py": "EvolvingLMMs-Lab/lmms-eval (lmms_eval/tasks/chartqa)",
    "evaluation/opensource_json_eval.py": "DynaMath/DynaMath",
    "eval/score.py": "FanqingM/MMK12 (lmms-eval's MMK12 task)",
    "scripts/evaluate_mllm.py": "tsb0601/MMVP",
}
#: (referring file, reference) pairs that are examples relative to another base.
EXAMPLES = {
    ("visgrpo/lightning/compose.py", "../base.yaml"): "an experiment's defaults, relative to configs/experiment/",
    ("visgrpo/lightning/compose.py", "../model/tiny_qwen2_5_vl.yaml"): "the same example",
    ("visgrpo/lightning/compose.py", "../objective/dapo.yaml"): "the same example",
}
#: Exact references to files that land with another branch of the same change.
PENDING: dict[str, str] = {}
#: Documents that are specifications outside the repository: never cite them.
UNSHIPPED = tuple(name + ".md" for name in ("METHODS", "DESIGN", "CONTRACT"))

_EXT = "|".join(EXTENSIONS)
# A path with at least one directory part, ending in a known extension.
PATH_RE = re.compile(rf"(?<![\w./-])(?:\.{{1,2}}/)?(?:[\w.-]+/)+[\w.-]+\.(?:{_EXT})(?![\w/-])")
# A bare markdown file name.
MD_NAME_RE = re.compile(r"(?<![\w./-])[\w-]+\.md(?![\w/-])")
LINK_RE = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
URL_RE = re.compile(r"(?:[a-z][\w+.-]*://|www\.)\S+|\b[\w.-]+\.(?:com|org|io|net|ai|dev)/\S*", re.I)
PLACEHOLDER_CHARS = set("<>{}*$%[]~")


def repo_files() -> list[Path]:
    """The scanned files: the given suffixes, outside SKIP_DIRS and hidden directories."""
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames
                       if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")]
        out += [Path(dirpath) / f for f in filenames if Path(f).suffix in SUFFIXES]
    return sorted(out)


def _word_around(text: str, start: int, end: int) -> str:
    """The whitespace / quote / backtick delimited word containing ``text[start:end]``."""
    stop = " \t\n\"'`(),;"
    lo, hi = start, end
    while lo > 0 and text[lo - 1] not in stop:
        lo -= 1
    while hi < len(text) and text[hi] not in stop:
        hi += 1
    return text[lo:hi]


def _is_placeholder(word: str) -> bool:
    first = word.split("/", 1)[0]
    return (
        bool(PLACEHOLDER_CHARS & set(word))
        or "..." in word
        or "://" in word
        or (first.isupper() and "/" in word)
    )


def readable_text(path: Path) -> str:
    """The text a reader sees: for Python, its comments and docstrings only (the rest is
    blanked, keeping line numbers); other files whole.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        return text
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    out = [c if c == "\n" else " " for c in text]
    prev, depth = tokenize.NEWLINE, 0  # a docstring is a string that starts a statement
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
            starts_statement = prev in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
            if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and starts_statement):
                a = starts[tok.start[0] - 1] + tok.start[1]
                b = starts[tok.end[0] - 1] + tok.end[1]
                out[a:b] = text[a:b]
            if tok.type != tokenize.COMMENT and not (tok.type == tokenize.NL and depth == 0):
                prev = tok.type
    except (tokenize.TokenError, SyntaxError):
        return text
    return "".join(out)


def references(text: str) -> list[tuple[int, str]]:
    """``(line, target)`` of every file reference in ``text`` (see the module docstring)."""
    refs: list[tuple[int, str]] = []

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    for m in LINK_RE.finditer(text):
        target = m.group(1)
        if target.startswith("#") or URL_RE.match(target) or target.startswith("mailto:") or _is_placeholder(target):
            continue
        refs.append((line_of(m.start()), target))
    # Paths and names outside URLs (the URLs are blanked, keeping offsets).
    plain = URL_RE.sub(lambda u: " " * len(u.group(0)), LINK_RE.sub(lambda u: " " * len(u.group(0)), text))
    for regex in (PATH_RE, MD_NAME_RE):
        for m in regex.finditer(plain):
            if _is_placeholder(_word_around(plain, m.start(), m.end())):
                continue
            refs.append((line_of(m.start()), m.group(0)))
    return refs


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", md.read_text(), re.M)}


def problem(target: str, referrer: Path) -> str | None:
    """Why ``target`` (as written in ``referrer``) is dangling, or None when it resolves."""
    path, _, anchor = target.partition("#")
    if not path or path.startswith("/"):
        return None
    rel = path[2:] if path.startswith("./") else path
    if rel in PENDING or rel in EXTERNAL or any(rel.startswith(p) or rel.rsplit("/", 1)[-1] == p for p in GENERATED):
        return None
    if referrer.is_relative_to(ROOT) and (referrer.relative_to(ROOT).as_posix(), rel) in EXAMPLES:
        return None
    bases = [referrer.parent]
    while bases[-1] != ROOT and bases[-1].is_relative_to(ROOT) and bases[-1] != bases[-1].parent:
        bases.append(bases[-1].parent)
    for base in (*bases, ROOT):
        candidate = (base / rel).resolve()
        if candidate.exists():
            if anchor and candidate.suffix == ".md" and anchor not in _anchors(candidate):
                return f"no heading with anchor #{anchor} in {candidate.relative_to(ROOT)}"
            return None
    return "no such file (relative to the repository root or to the referring file)"


def dangling(files: list[Path]) -> list[str]:
    out = []
    for f in files:
        for line, target in references(readable_text(f)):
            why = problem(target, f)
            if why:
                where = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
                out.append(f"{where}:{line}: {target}: {why}")
    return out


def test_scan_sees_the_repository():
    files = {f.relative_to(ROOT).as_posix() for f in repo_files()}
    assert {"README.md", "docs/methods.md", "docs/architecture.md", "pyproject.toml"} <= files
    assert "visgrpo/credit/vgpo.py" in files and "configs/credit/vgpo.yaml" in files


def test_no_dangling_references():
    bad = dangling(repo_files())
    assert not bad, "dangling references:\n" + "\n".join(bad)


def test_unshipped_specs_are_never_named():
    hits = []
    for f in repo_files():
        for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            hits += [f"{f.relative_to(ROOT)}:{i}: {name}" for name in UNSHIPPED if name in line]
    assert not hits, "documents outside the repository are cited:\n" + "\n".join(hits)


def test_pending_entries_are_still_needed():
    """A PENDING file that now exists, or one nothing refers to, must leave the list."""
    refs = {t.partition("#")[0] for f in repo_files() for _, t in references(readable_text(f))}
    for rel in PENDING:
        assert not (ROOT / rel).exists(), f"{rel} exists now: remove it from PENDING"
        assert rel in refs, f"nothing refers to {rel}: remove it from PENDING"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see `docs/methods.md`, VGPO", ["docs/methods.md"]),
        ("[methods](docs/methods.md#vgpo) and ![plot](experiments/shapes/results/accuracy.png)",
         ["docs/methods.md#vgpo", "experiments/shapes/results/accuracy.png"]),
        ("the README.md and configs/credit/sayo.yaml", ["configs/credit/sayo.yaml", "README.md"]),
        ("https://github.com/a/b/blob/main/x/README.md and github.com/QwenLM/x/y.py", []),
        ("configs/credit/<name>.yaml, tests/credit/test_{m}.py, configs/*/x.yaml, $HOME/a/b.py", []),
        ("visgrpo-data masks --dataset data/raw --out data/evidence; /tmp/x/y.py; config.yaml", []),
        ("[anchor only](#notation) and [web](https://example.org/a.md)", []),
    ],
)
def test_reference_extraction(text, expected):
    assert [t for _, t in references(text)] == expected


def test_a_dangling_reference_fails(tmp_path):
    """The checker reports a missing file and a missing heading, and accepts real ones."""
    doc = tmp_path / "probe.md"
    doc.write_text(
        "See docs/nowhere.md, [x](docs/methods.md#no-such-section), configs/credit/missing.yaml,\n"
        "and the real [methods](docs/methods.md#vgpo), docs/architecture.md, README.md.\n"
    )
    bad = dangling([doc])
    assert len(bad) == 3, bad
    assert any("#no-such-section" in b for b in bad)
    assert any("docs/nowhere.md" in b for b in bad)
    assert any("configs/credit/missing.yaml" in b for b in bad)
