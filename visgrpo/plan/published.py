"""The released checkpoints' ``config.json`` values, shipped with visgrpo (configuration, not weights).

``visgrpo plan`` builds a recipe's model on the meta device from its configuration alone, so
it must know the architecture of ``Qwen/Qwen2.5-VL-7B-Instruct`` without downloading
anything. The files in ``published/`` hold the architecture fields of the hub's
``config.json`` of each checkpoint below (token ids, sizes, rope and vision settings; no
weights, no tokenizer). They are loaded through transformers' own configuration classes
(``CONFIG_MAPPING[model_type].from_dict``), never with remote code.

Sources (the hub's ``config.json`` of each checkpoint, cross-checked against public
transcriptions): Qwen2.5-VL-3B-Instruct, its full ``config.json`` as printed in a public model
dump; Qwen2.5-VL-7B and Qwen2-VL-7B, the module shapes printed in
https://github.com/acproject/duorou/blob/HEAD/docs/qwen2.5vl_graph.md and
https://github.com/zhenhua32/Qwen2-VL/blob/HEAD/READ.md; Qwen2.5-VL-32B, the Qwen2.5-32B
text model card (64 layers, 40 query / 8 key-value heads,
https://github.com/ZHUI/paddlenlp_model_readme/blob/HEAD/Qwen/Qwen2.5-32B/index.md) with the
Qwen2.5-VL vision tower; Qwen3-VL-8B-Instruct, the ``config.json`` transcribed as
``COSMOS_REASON2_8B`` in a public Alpamayo port ("Qwen/Qwen3-VL-8B-Instruct's own public
(ungated) config.json"); Qwen3-VL-4B, its vision config (depth 24, width 1024, out 2560,
deepstack 5/11/17) as in public Qwen3-VL configuration transcriptions. The parameter counts
these give on the meta device equal the hub's safetensors totals of the five checkpoints
whose totals are recorded in tests/plan/test_published.py.
"""

from __future__ import annotations

import json
from importlib import resources

#: hub id -> file name in ``visgrpo/plan/published``
PUBLISHED: dict[str, str] = {
    "Qwen/Qwen2-VL-7B-Instruct": "Qwen2-VL-7B-Instruct.json",
    "Qwen/Qwen2.5-VL-3B-Instruct": "Qwen2.5-VL-3B-Instruct.json",
    "Qwen/Qwen2.5-VL-7B-Instruct": "Qwen2.5-VL-7B-Instruct.json",
    "Qwen/Qwen2.5-VL-32B-Instruct": "Qwen2.5-VL-32B-Instruct.json",
    "Qwen/Qwen3-VL-4B-Instruct": "Qwen3-VL-4B-Instruct.json",
    "Qwen/Qwen3-VL-8B-Instruct": "Qwen3-VL-8B-Instruct.json",
}


def published_id(name: str) -> str | None:
    """The hub id of a shipped config matching ``name`` (a hub id, with or without the
    ``Qwen/`` owner, case-insensitive), or None.
    """
    wanted = name.strip().lower()
    for hub_id in PUBLISHED:
        if wanted in (hub_id.lower(), hub_id.split("/", 1)[1].lower()):
            return hub_id
    return None


def published_dict(name: str) -> dict:
    """The shipped ``config.json`` values of ``name`` (see :func:`published_id`).

    Raises:
        KeyError: no shipped config for ``name`` (the message lists the shipped ones).
    """
    hub_id = published_id(name)
    if hub_id is None:
        raise KeyError(f"{name}: no shipped model config; shipped: {', '.join(PUBLISHED)}")
    text = resources.files("visgrpo.plan").joinpath("published").joinpath(PUBLISHED[hub_id]).read_text()
    return json.loads(text)


def published_config(name: str):
    """The transformers configuration object (``Qwen2_5_VLConfig``, ...) of a shipped checkpoint."""
    from transformers import CONFIG_MAPPING

    values = published_dict(name)
    return CONFIG_MAPPING[values["model_type"]].from_dict(values)
