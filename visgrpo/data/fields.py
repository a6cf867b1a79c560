"""Column names shared by the dataset, the batch types and the credit signals.

The evidence columns are written per merged visual token by ``visgrpo-data masks``
(:data:`visgrpo.data.schema.DERIVED_FEATURES`), carried per response by
:class:`visgrpo.data.batch.RolloutBatch` and handed to credit methods in
:class:`visgrpo.data.signals.Signals`; everything that names them uses this tuple.
"""

from __future__ import annotations

#: Per-token evidence columns: coverage in [0, 1], EASE target (sums to 1), box labels.
EVIDENCE_FIELDS: tuple[str, str, str] = ("evidence_mask", "evidence_target", "region_labels")
