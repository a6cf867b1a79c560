"""``visgrpo``: the Lightning CLI entry point (``visgrpo fit|validate|test|predict``), and
``visgrpo eval`` (benchmarks, visgrpo/evaluation/cli.py)."""

from __future__ import annotations

import sys

from visgrpo.evaluation.cli import main as eval_main
from visgrpo.lightning.cli import run_cli
from visgrpo.lightning.compose import expand_config_args


def main(argv: list[str] | None = None) -> int:
    """Run the Lightning CLI (or ``eval``)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["eval"]:
        return eval_main(args[1:])
    if argv is None:
        # Expanded experiment parts and merged callbacks replace the originals in sys.argv
        # itself: LightningCLI reads them there, and DDP's launcher re-runs the same command
        # line for the other ranks.
        sys.argv[1:] = expand_config_args(sys.argv[1:])
    run_cli(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
