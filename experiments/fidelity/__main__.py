"""``python -m experiments.fidelity [--out FILE]``: the size of every departure from the authors' code.

Runs :mod:`experiments.fidelity.measure_departures` (SAYO, VGPO) and
:mod:`experiments.fidelity.measure_vppo_papo` (VPPO, PAPO, the recipes' objectives) on their
fixed random batches, prints their lines and writes them to ``--out`` (default under ``runs/``;
the committed experiments/fidelity/results/departures.txt changes only when named). These are
the "measured effect" figures of docs/methods.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path


class _Tee(io.StringIO):
    """A text buffer that also echoes to the real stdout."""

    def write(self, s: str) -> int:
        sys.__stdout__.write(s)
        return super().write(s)


def main(argv: list[str] | None = None) -> int:
    from experiments.fidelity import measure_departures, measure_vppo_papo
    from visgrpo.evaluation.report import write_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fidelity/departures.txt",
                        help="text file of the printed lines; default under runs/, so the committed "
                        "experiments/fidelity/results/departures.txt changes only when named")
    args = parser.parse_args(argv)
    buffer = _Tee()
    with contextlib.redirect_stdout(buffer):
        measure_departures.main()
        measure_vppo_papo.main()
    write_atomic(Path(args.out), buffer.getvalue())
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
