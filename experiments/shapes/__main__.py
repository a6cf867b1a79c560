"""``python -m experiments.shapes [options]``: the full shapes experiment (see README.md).

The same as ``python -m experiments.shapes.run_all`` (every method x seed from the committed
warm start, then the report; output under ``runs/`` unless ``--out`` names
experiments/shapes/results). The README's demo is ``python -m experiments.shapes.demo``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from experiments.shapes.run_all import main as run_all

    return run_all(argv)


if __name__ == "__main__":
    raise SystemExit(main())
