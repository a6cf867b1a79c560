"""The identity credit method: the plain objective (GRPO / DAPO / ... of docs/methods.md, Base objectives)."""

from __future__ import annotations

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod


@CREDIT_METHODS.register("none")
class NoCredit(CreditMethod):
    """No visual credit: no extra reward, advantages unchanged, no auxiliary loss.

    Diagnostics (``visgrpo.credit.diagnostics``) still run for it, so the baseline's
    evidence attention ratio and visual-forgetting curve are logged like every method's.
    """

    name = "none"

    def __init__(self) -> None:
        super().__init__()


__all__ = ["NoCredit"]
