"""The evidence dataset schema (docs/architecture.md, "Dataset schema").

Base columns are written by ``synth`` and ``convert``; derived columns are added by
``masks`` for one processor configuration, whose fingerprint is stored in the dataset's
``visgrpo_meta.json`` under ``"processor"``.

Multi-image samples: such a dataset has an ``images``
column (a list of images) instead of ``image``, list-valued ``width``/``height``, and a
``box_image`` column giving, for each box, the index of the image it lies in.
``grid_thw`` is always a list of ``[t, h, w]``, one per image (single-image: one entry),
and ``evidence_mask`` / ``evidence_target`` / ``region_labels`` run over the merged
visual tokens of all images in order, i.e. exactly the order of the image-pad tokens in
the prompt. ``evidence_target`` sums to 1 over all of a sample's tokens.
"""

from __future__ import annotations

import datasets

from visgrpo.data.fields import EVIDENCE_FIELDS
from visgrpo.data.geometry import FINGERPRINT_FIELDS

ANSWER_TYPES = ("choice", "number", "text", "box")

BASE_FEATURES = {
    "id": datasets.Value("string"),
    "image": datasets.Image(),
    "question": datasets.Value("string"),
    "answer": datasets.Value("string"),
    "answer_type": datasets.Value("string"),
    "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
    "box_labels": datasets.Sequence(datasets.Value("string")),
    "source": datasets.Value("string"),
    "width": datasets.Value("int32"),
    "height": datasets.Value("int32"),
}

_EVIDENCE_DTYPES = ("float32", "float32", "int32")  # of EVIDENCE_FIELDS, in order

DERIVED_FEATURES = {
    "grid_thw": datasets.Sequence(datasets.Sequence(datasets.Value("int32"), length=3)),
    **{
        name: datasets.Sequence(datasets.Value(dtype))
        for name, dtype in zip(EVIDENCE_FIELDS, _EVIDENCE_DTYPES, strict=True)
    },
}

FINGERPRINT_KEYS = FINGERPRINT_FIELDS  # what visgrpo.data.geometry.Geometry.fingerprint() holds


class FingerprintMismatch(ValueError):
    """The dataset's evidence fields were built for another processor configuration."""


def check_fingerprint(dataset_fp: dict | None, model_fp: dict, where: str = "dataset",
                      processor: str | None = None) -> None:
    """Raise :class:`FingerprintMismatch` naming each differing key.

    Args:
        dataset_fp: fingerprint stored with the dataset (``None``: no masks built).
        model_fp: fingerprint of the processor the model uses.
        where: dataset path, for the message.
        processor: the model's ``name_or_path`` (``tiny:qwen2_5_vl``, a directory, a hub id):
            the message then gives the exact ``--processor`` to rebuild the masks with.
    """
    fix = f"--processor {processor}" if processor else "--processor <model dir>"
    if not dataset_fp:
        raise FingerprintMismatch(
            f"{where}: no processor fingerprint; run `visgrpo-data masks {fix}` for this model's processor"
        )
    diffs = [
        f"{k}: dataset={dataset_fp.get(k)!r} model={model_fp.get(k)!r}"
        for k in FINGERPRINT_KEYS
        if dataset_fp.get(k) != model_fp.get(k)
    ]
    if diffs:
        raise FingerprintMismatch(
            f"{where}: evidence masks were built for another processor ("
            + "; ".join(diffs)
            + f"); rebuild them with `visgrpo-data masks {fix}`"
        )
