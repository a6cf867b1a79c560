"""Fixtures for the reward tests: the helper module on sys.path, a shared math pool."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def helpers_path(monkeypatch):
    """Put ``reward_helpers`` on sys.path (workers started afterwards inherit it)."""
    monkeypatch.syspath_prepend(str(HERE))
    return str(HERE)


@pytest.fixture(scope="module")
def pool():
    """A two-worker math pool shared by a test module."""
    from visgrpo.rewards import MathPool

    p = MathPool(size=2)
    yield p
    p.close()
