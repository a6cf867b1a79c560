"""``visgrpo``: the Lightning CLI entry point (``visgrpo fit|validate|test|predict``), and
``visgrpo eval`` (benchmarks, visgrpo/evaluation/cli.py) and ``visgrpo plan`` (memory before
GPU hours, visgrpo/plan/cli.py).

User errors (a bad config key or value, a missing or mismatched dataset, a model path that is
neither a local directory nor on a reachable hub, an unsafe checkpoint) print one line
``error: ...`` naming the key or file and exit with code 2; ``--debug`` (or
``VISGRPO_DEBUG=1``) shows the full traceback instead. Anything else is a bug: traceback.
"""

from __future__ import annotations

import os
import sys

from jsonargparse import ArgumentError

from visgrpo.evaluation.cli import main as eval_main
from visgrpo.lightning.cli import run_cli
from visgrpo.lightning.compose import expand_config_args
from visgrpo.lightning.errors import ConfigError, find_user_error
from visgrpo.plan.cli import main as plan_main

USER_ERROR_EXIT = 2


def _debug_requested(args: list[str]) -> bool:
    """Pop ``--debug`` from ``args``; true with it or ``VISGRPO_DEBUG=1`` (inherited by DDP ranks)."""
    if "--debug" in args:
        while "--debug" in args:
            args.remove("--debug")
        os.environ["VISGRPO_DEBUG"] = "1"
    return os.environ.get("VISGRPO_DEBUG", "").lower() in ("1", "true", "yes", "on")


def parser_error_line(err: ArgumentError) -> str:
    """The useful part of a jsonargparse error: the key and the innermost reason, one line
    (a class's Union wrapper, the subtype list and the echoed value are dropped)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    noise = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
             "- Expected a <class 'NoneType'>")
    detail = [ln.removeprefix("- ") for ln in lines[1:] if not ln.startswith(noise)]
    return " ".join([lines[0], *detail[:2]])


def main(argv: list[str] | None = None) -> int:
    """Run the Lightning CLI (or ``eval``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["eval"]:
        return eval_main(args[1:])
    debug = _debug_requested(args)
    try:
        if args[:1] == ["plan"]:
            return plan_main(args[1:])
        if argv is None:
            # Expanded experiment parts and merged callbacks replace the originals in sys.argv
            # itself: LightningCLI reads them there, and DDP's launcher re-runs the same command
            # line for the other ranks.
            try:
                sys.argv[1:] = expand_config_args(args)
            except FileNotFoundError as err:  # a --config file or a part its defaults: list
                raise ConfigError("--config", str(err)) from err
        run_cli(None if argv is None else args)
    except Exception as err:
        if debug:
            raise
        user = find_user_error(err)
        if user is not None:
            line = str(user).strip().splitlines()[0] if str(user).strip() else type(user).__name__
        elif isinstance(err, ArgumentError):
            line = parser_error_line(err)
        else:
            raise
        print(f"error: {line} (--debug for the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
