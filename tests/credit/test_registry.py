"""Every registered credit method comes with its four files: the method module (where it
registers and declares its validation target), ``configs/credit/<name>.yaml``,
``tests/credit/test_<name>.py`` and a section of ``docs/methods.md``. Registration is
automatic: the package imports all its modules.
"""

from __future__ import annotations

import math
import pkgutil
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

import visgrpo.credit
from visgrpo.credit import CREDIT_METHODS, CreditMethod
from visgrpo.credit.mechanism import methods_with_targets, target_methods, target_metrics
from visgrpo.data.signals import Signals

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


#: Registered methods without a target of their own, and why (a new method either declares
#: ``target_metrics`` or is listed here with its reason).
NO_OWN_TARGET = {
    "none": "the plain objective",
    "papo": "measured by VPPO's visual dependency: one perturbation for every arm (credit/vppo.py)",
}
L, B, T, N, D = 3, 2, 6, 4, 8


def full_signals() -> Signals:
    """Every signal a method may read, for a 3-layer model (random but valid: attention rows
    are distributions over the image tokens, evidence covers token 0).
    """
    g = torch.Generator().manual_seed(0)

    def rows(*shape):
        return torch.rand(*shape, generator=g).softmax(-1)

    logp = -torch.rand(B, T, generator=g)
    return Signals(
        response_mask=torch.ones(B, T, dtype=torch.bool), group_ids=torch.zeros(B, dtype=torch.long),
        rewards=torch.tensor([1.0, 0.0]), image_mask=torch.ones(B, N, dtype=torch.bool),
        entropies=torch.rand(B, T, generator=g), hidden=torch.randn(B, T, D, generator=g),
        own_hidden=torch.randn(B, T, D, generator=g), image_hidden_mean=torch.randn(B, D, generator=g),
        image_attention={k: rows(B, T, N) for k in range(L)},
        response_attention={k: rows(B, T, T).tril() for k in range(L)},
        own_image_attention={k: rows(B, T, N) for k in range(L)},
        evidence_mask=torch.tensor([[1.0, 0, 0, 0]] * B), evidence_target=torch.tensor([[0.7, 0.1, 0.1, 0.1]] * B),
        region_labels=torch.tensor([[1, 0, 0, 0]] * B), logp=logp,
        masked_logp=logp - 0.5 * torch.rand(B, T, generator=g),
    )


@pytest.mark.parametrize("name", CREDIT_METHODS.names())
def test_method_declares_its_validation_target(name):
    """The method's own file declares its target metrics; the validation loop then measures
    them (val/<name>/<metric>) with no central table to update.
    """
    cls = CREDIT_METHODS.get(name)
    if name in NO_OWN_TARGET:
        assert not cls.declares_target(), f"{name} declares a target: remove it from NO_OWN_TARGET"
        return
    assert cls.declares_target(), f"credit method {name!r} declares no target_metrics (or list it in NO_OWN_TARGET)"
    assert name in methods_with_targets()
    method = cls()
    method.signal_request(L)
    out = method.target_metrics(full_signals())
    assert out, f"{name}.target_metrics measured nothing on a batch with every signal"
    for key, value in out.items():
        assert "/" not in key and math.isfinite(float(value)), (name, key, value)
    logged = target_metrics(target_methods([], L), full_signals())
    assert {f"{name}/{k}" for k in out} <= set(logged)


def test_readme_method_table_lists_exactly_the_registered_methods():
    """The README's method table is the one list of methods outside the registry: it must
    name every registered method (``none`` aside) and nothing else.
    """
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| method | signal |"):].split("\n\n", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")]
    assert {_key(row) for row in rows} == set(CREDIT_METHODS) - {"none"}
