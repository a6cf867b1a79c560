"""The data layer: the contracts every other part of visgrpo and ``data_tools`` share.

Nothing here trains or samples; these modules only describe data, so every layer may import
them (docs/architecture.md, "Layers"):

* :mod:`~visgrpo.data.fields`: the evidence column names (one definition);
* :mod:`~visgrpo.data.schema`: the evidence dataset's columns and processor fingerprint;
* :mod:`~visgrpo.data.io`: atomic dataset writes and reads, with ``visgrpo_meta.json``;
* :mod:`~visgrpo.data.geometry`: the image processor's resize and visual-token grid;
* :mod:`~visgrpo.data.evidence`: the EASE evidence target over the token grid;
* :mod:`~visgrpo.data.batch`: the prompt and rollout batch types;
* :mod:`~visgrpo.data.images`: one image decode (EXIF orientation, any PIL mode to RGB8, pixel limit);
* :mod:`~visgrpo.data.signals`: what the teacher-forced forward pass is asked for and returns.

The data layer may import :mod:`visgrpo.models.families` (static facts about the model
families) and :mod:`visgrpo.registry`; neither of those imports the data layer.
Submodules are imported directly (``from visgrpo.data.batch import RolloutBatch``): this
package re-exports nothing, so importing one contract does not pull in the others' libraries.
"""
