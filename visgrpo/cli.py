"""``visgrpo``: the Lightning CLI entry point (``visgrpo fit|validate|test|predict``), and
``visgrpo eval`` (benchmarks, visgrpo/evaluation/cli.py) and ``visgrpo plan`` (memory before
GPU hours, visgrpo/plan/cli.py).

User errors (a bad config key or value, a missing or mismatched dataset, a model path that is
neither a local directory nor on a reachable hub, an unsafe checkpoint, an unreadable record)
print one line ``error: ...`` naming the key or file and exit with code 2; ``--debug`` (or
``VISGRPO_DEBUG=1``) shows the full traceback instead. Anything else is a bug: traceback.

The heavy stack (torch, Lightning, transformers) is imported only by the subcommand that
runs, so ``visgrpo --help`` answers at once.
"""

from __future__ import annotations

import os
import sys

USER_ERROR_EXIT = 2

#: Subcommands: name -> (module whose ``main(argv) -> int`` runs it, or None: the Lightning
#: CLI; one line for ``visgrpo --help``). A new subcommand is one entry here.
SUBCOMMANDS: dict[str, tuple[str | None, str]] = {
    "fit": (None, "train (RL or SFT) from composed configs: visgrpo fit --config configs/experiment/X.yaml"),
    "validate": (None, "greedy decoding on data.val_path (with --ckpt_path last: this run's checkpoint)"),
    "test": (None, "greedy decoding on data.test_path"),
    "predict": (None, "Lightning's predict loop"),
    "eval": ("visgrpo.evaluation.cli", "a model on standard benchmarks from local copies (visgrpo eval --help)"),
    "plan": ("visgrpo.plan.cli", "memory per GPU count for a recipe, before the GPU hours (visgrpo plan --help)"),
}


def top_level_help() -> str:
    """``visgrpo --help``: the subcommands, without importing the training stack."""
    width = max(map(len, SUBCOMMANDS))
    lines = [
        "usage: visgrpo {" + ",".join(SUBCOMMANDS) + "} [options]",
        "",
        "RLVR of vision-language models with visually grounded credit; compose configs/ with",
        "repeated --config. `visgrpo SUBCOMMAND --help` lists a subcommand's options.",
        "",
        "subcommands:",
        *(f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()),
        "",
        "options:",
        "  --debug  show the full traceback of a user error (also VISGRPO_DEBUG=1)",
    ]
    return "\n".join(lines)


def _debug_requested(args: list[str]) -> bool:
    """Pop ``--debug`` from ``args``; true with it or ``VISGRPO_DEBUG=1`` (inherited by DDP ranks)."""
    if "--debug" in args:
        while "--debug" in args:
            args.remove("--debug")
        os.environ["VISGRPO_DEBUG"] = "1"
    return os.environ.get("VISGRPO_DEBUG", "").lower() in ("1", "true", "yes", "on")


def run_cli(args: list[str] | None = None) -> None:
    """``visgrpo fit|validate|test|predict ...`` (imports the Lightning stack on first use)."""
    from visgrpo.lightning.cli import run_cli as run_lightning_cli

    run_lightning_cli(args)


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand (see :data:`SUBCOMMANDS`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(top_level_help())
        return 0 if args else USER_ERROR_EXIT
    module = SUBCOMMANDS.get(args[0], (None, ""))[0]
    if args[0] not in SUBCOMMANDS and not args[0].startswith("-"):
        from difflib import get_close_matches

        close = get_close_matches(args[0], SUBCOMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"error: unknown subcommand {args[0]!r}{hint} (valid: {', '.join(SUBCOMMANDS)})", file=sys.stderr)
        return USER_ERROR_EXIT
    debug = _debug_requested(args)
    from jsonargparse import ArgumentError

    from visgrpo.lightning.errors import ConfigError, find_user_error, parser_error_line
    from visgrpo.lightning.noise import silence_third_party_noise

    silence_third_party_noise()
    try:
        if module is not None:
            from importlib import import_module

            return import_module(module).main(args[1:])
        if argv is None:
            from visgrpo.lightning.compose import expand_config_args

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
            line = parser_error_line(err, args)
        else:
            raise
        print(f"error: {line} (--debug for the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
