"""Every registered credit method comes with its four files: the method module (where it
registers), ``configs/credit/<name>.yaml``, ``tests/credit/test_<name>.py`` and a section of
``docs/methods.md``. Registration is automatic: the package imports all its modules."""

from __future__ import annotations

import pkgutil
import re
import sys
from pathlib import Path

import pytest
import yaml

import visgrpo.credit
from visgrpo.credit import CREDIT_METHODS, CreditMethod

ROOT = Path(__file__).resolve().parents[2]
METHODS_DOC = ROOT / "docs" / "methods.md"
# The identity method is the plain objective: its section is the base objectives'.
DOC_HEADING = {"none": "Base objectives"}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())  # "AT-RL" -> "atrl"


def test_every_credit_module_is_imported_and_every_method_registered():
    modules = {m.name for m in pkgutil.iter_modules(visgrpo.credit.__path__)}
    registered = {cls.__module__.rsplit(".", 1)[-1] for cls in map(CREDIT_METHODS.get, CREDIT_METHODS)}
    assert registered <= modules
    for name in modules:  # the package imported them all (no explicit list to keep up to date)
        assert f"visgrpo.credit.{name}" in sys.modules
    for name in CREDIT_METHODS:
        cls = CREDIT_METHODS.get(name)
        assert issubclass(cls, CreditMethod) and cls.name == name, (name, cls)


@pytest.mark.parametrize("name", CREDIT_METHODS.names())
def test_method_has_its_config(name):
    path = ROOT / "configs" / "credit" / f"{name}.yaml"
    assert path.is_file(), f"credit method {name!r} is registered but {path.relative_to(ROOT)} is missing"
    credit = yaml.safe_load(path.read_text())["model"]["init_args"]["credit"]
    cls = CREDIT_METHODS.get(name)
    expected = [] if name == "none" else [f"{cls.__module__}.{cls.__qualname__}"]
    assert [c["class_path"] for c in credit] == expected, path


@pytest.mark.parametrize("name", CREDIT_METHODS.names())
def test_method_has_its_test_file(name):
    path = ROOT / "tests" / "credit" / f"test_{name}.py"
    if name == "none":  # the identity: covered by test_base.py (every hook is the identity)
        path = ROOT / "tests" / "credit" / "test_base.py"
    assert path.is_file(), f"credit method {name!r} is registered but {path.relative_to(ROOT)} is missing"


@pytest.mark.parametrize("name", CREDIT_METHODS.names())
def test_method_has_its_docs_section(name):
    if not METHODS_DOC.is_file():
        pytest.skip("docs/methods.md is not in this branch yet (written on the docs branch)")
    headings = [_key(line.lstrip("#")) for line in METHODS_DOC.read_text().splitlines() if line.startswith("#")]
    want = _key(DOC_HEADING.get(name, name))
    assert any(want in h for h in headings), f"docs/methods.md has no section heading naming {name!r}"
