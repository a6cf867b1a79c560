"""Credit assignment that follows the policy's visual attention (docs/methods.md).

One file per method, all built on the interface of :mod:`visgrpo.credit.base`; importing
this package imports every module in it, so each method registers itself in
:data:`CREDIT_METHODS` with its decorator (``CREDIT_METHODS.names()`` lists them) and
declares its own validation target (``target_metrics``). A new method is one new file here
(plus its config, test and docs section): this file needs no edit.
"""

import importlib
import pkgutil

from visgrpo.credit.atrl import ATRLCredit
from visgrpo.credit.base import (
    CREDIT_METHODS,
    ComposedCredit,
    CreditMethod,
    build_credit,
    resolve_layers,
    top_fraction_mask,
)
from visgrpo.credit.ease import EASECredit
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
    "VGPOCredit",
    "build_credit",
    "resolve_layers",
    "top_fraction_mask",
]

# Import every module of the package (new method files included) so that they register.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
