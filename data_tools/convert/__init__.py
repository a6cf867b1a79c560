"""``visgrpo-data convert {jsonl,coco,refcoco,hf}``: grounding data to the evidence schema.

* ``jsonl``   -- generic JSON lines with field-mapping flags (:mod:`.jsonl`);
* ``coco``    -- COCO instances file joined with a questions file referring to annotation
  ids (:mod:`.coco`);
* ``refcoco`` -- referring expressions; the answer and the evidence are the box
  (:mod:`.refcoco`);
* ``hf``      -- a local Hugging Face dataset (VQA/RL formats, multi-image, boxes optional)
  (:mod:`.hf`).

All write the evidence schema (docs/architecture.md) (plus an optional ``segmentation`` column, one JSON text per
box: :mod:`data_tools.segmentation`) atomically, with ``--format arrow|parquet`` and ``--on-error raise|skip``.
"""

from __future__ import annotations

import importlib

SUBCOMMANDS = {
    "jsonl": (
        "data_tools.convert.jsonl",
        "generic JSON lines (field-mapping flags, any box format)",
    ),
    "coco": (
        "data_tools.convert.coco",
        "COCO instances + a questions file referring to annotation ids",
    ),
    "refcoco": (
        "data_tools.convert.refcoco",
        "referring expressions (refer-toolkit refs + COCO instances)",
    ),
    "hf": (
        "data_tools.convert.hf",
        "a local Hugging Face dataset (column mapping; presets virl39k | geometry3k | trl)",
    ),
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="convert_format", required=True, metavar="FORMAT")
    for name, (module, help_text) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name, help=help_text, description=(mod.__doc__ or help_text).strip().splitlines()[0]
        )
        mod.add_arguments(p)
        p.set_defaults(convert_run=mod.run)


def run(args) -> int:
    return int(args.convert_run(args) or 0)
