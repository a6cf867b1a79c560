"""Credit assignment that follows the policy's visual attention (docs/methods.md, SAYO to EASE).

One file per method (``sayo``, ``vgpo``, ``atrl``, ``ease``, ``none``), all built on the
interface of :mod:`visgrpo.credit.base`; importing this package registers them all in
:data:`CREDIT_METHODS`.
"""

from visgrpo.credit.atrl import ATRLCredit
from visgrpo.credit.base import (
    CREDIT_METHODS,
    ComposedCredit,
    CreditMethod,
    SignalRequest,
    Signals,
    build_credit,
    resolve_layers,
    top_fraction_mask,
)
from visgrpo.credit.ease import EASECredit, smoothed_evidence_target
from visgrpo.credit.none import NoCredit
from visgrpo.credit.sayo import SAYOCredit
from visgrpo.credit.vgpo import VGPOCredit

__all__ = [
    "CREDIT_METHODS",
    "ATRLCredit",
    "ComposedCredit",
    "CreditMethod",
    "EASECredit",
    "NoCredit",
    "SAYOCredit",
    "SignalRequest",
    "Signals",
    "VGPOCredit",
    "build_credit",
    "resolve_layers",
    "smoothed_evidence_target",
    "top_fraction_mask",
]
