"""``python -m experiments.learning [options]``: the credit comparison on the learning testbed.

The study's runs are the mechanism study's stages on ``--testbed learning`` (see README.md):
this entry point is ``python -m experiments.mechanism --testbed learning`` with the same
options (``--testbed prior`` for the language-prior testbed, ``--results``, ``--configs``,
``--seeds``...); the results go under ``runs/learning/results`` unless ``--results`` names the committed
experiments/learning/results. Tables and curves: ``python -m experiments.learning.compare``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from experiments.mechanism.__main__ import main as study_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--testbed" or a.startswith("--testbed=") for a in argv):
        argv = ["--testbed", "learning", *argv]
    if not any(a == "--results" or a.startswith("--results=") for a in argv):
        argv = ["--results", "runs/learning/results", *argv]
    return study_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
