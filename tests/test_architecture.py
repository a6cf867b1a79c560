"""The import architecture: the import-linter contracts of pyproject.toml hold, and no module of
visgrpo or data_tools imports visgrpo inside a function (the way cycles used to be dodged).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module path -> why its function-level ``visgrpo`` import stays (keep this list short).
FUNCTION_IMPORT_ALLOWED = {
    "visgrpo/cli.py": "lazy subcommands: `visgrpo --help` answers without importing torch and Lightning, "
    "and `eval` / `plan` load only their own stack (issue 25)",
    "visgrpo/rewards/__init__.py": "RewardHead needs torch; the math-verify worker processes "
    "import this package and must stay light (module __getattr__)",
}

_LINT = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))\n"
)


def test_import_contracts_hold():
    proc = subprocess.run(
        [sys.executable, "-c", _LINT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"lint-imports failed:\n{report}"
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", report)
    assert kept and int(kept.group(1)) >= 5, report  # every contract of pyproject.toml ran


def _function_level_visgrpo_imports(path: Path) -> list[str]:
    """``'line: module'`` for each ``import visgrpo...`` / ``from visgrpo...`` inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found.update(f"{node.lineno}: {m}" for m in names if m.split(".")[0] == "visgrpo")
    return sorted(found)


def test_no_function_level_visgrpo_imports():
    offenders = {}
    for package in ("visgrpo", "data_tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            hits = _function_level_visgrpo_imports(path)
            if hits and rel not in FUNCTION_IMPORT_ALLOWED:
                offenders[rel] = hits
    assert not offenders, f"import these at module level (or fix the cycle): {offenders}"
    for rel in FUNCTION_IMPORT_ALLOWED:  # a stale allow-list entry is an error too
        assert _function_level_visgrpo_imports(ROOT / rel), f"{rel} no longer needs its exemption"


def test_the_scan_sees_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import visgrpo.data\n"
        "def f():\n    from visgrpo.credit.base import Signals\n"
        "class C:\n    def g(self):\n        import visgrpo.rollout.hf, os\n"
    )
    assert _function_level_visgrpo_imports(src) == ["3: visgrpo.credit.base", "6: visgrpo.rollout.hf"]


def test_evidence_fields_have_one_definition():
    """The dataset columns, the rollout batch and the signals all carry EVIDENCE_FIELDS."""
    from visgrpo.data.batch import RolloutBatch
    from visgrpo.data.fields import EVIDENCE_FIELDS
    from visgrpo.data.schema import DERIVED_FEATURES
    from visgrpo.data.signals import Signals

    for cls in (RolloutBatch, Signals):
        assert set(EVIDENCE_FIELDS) <= {f.name for f in dataclasses.fields(cls)}, cls
    assert set(DERIVED_FEATURES) == {"grid_thw", *EVIDENCE_FIELDS}
