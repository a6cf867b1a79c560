"""``visgrpo-data``: build, check and look at evidence-annotated datasets.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (command, module, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("synth", "data_tools.synth", "write a deterministic synthetic evidence-VQA dataset"),
    ("convert", "data_tools.convert", "convert grounding / VQA data (jsonl | coco | refcoco | hf) to the schema"),
    ("masks", "data_tools.masks", "add visual-token evidence masks for one processor"),
    ("augment", "data_tools.augment", "albumentations augmentation keeping boxes and masks consistent"),
    ("validate", "data_tools.validate", "check schema, images and boxes; write a report"),
    ("stats", "data_tools.stats", "counts, tokens per image, evidence coverage histogram"),
    ("show", "data_tools.show", "render one sample with boxes, token grid and target heatmap"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visgrpo-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; bad input prints one clear line and exits 1 (no traceback)."""
    from data_tools.errors import RecordError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RecordError, FileExistsError, FileNotFoundError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"visgrpo-data {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
