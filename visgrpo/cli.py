"""``visgrpo``: the Lightning CLI entry point (``visgrpo fit|validate|test|predict``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the Lightning CLI."""
    from visgrpo.lightning.cli import run_cli

    run_cli(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
