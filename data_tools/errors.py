"""Errors and skip reports shared by every data-tools command.

Every bad record is reported with *where* it came from (file, line or record id) and
*which field* is wrong. ``--on-error raise`` (default) stops at the first one;
``--on-error skip`` drops the record and counts the reason in an :class:`ErrorReport`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class RecordError(ValueError):
    """A single input record is invalid.

    Args:
        where: file and line, or record id (e.g. ``"train.jsonl:17"`` or ``"id=coco_42"``).
        field: the offending field (e.g. ``"boxes[2]"``).
        reason: what is wrong, in words.
    """

    def __init__(self, where: str, field: str, reason: str) -> None:
        self.where, self.field, self.reason = where, field, reason
        super().__init__(f"{where}: field {field!r}: {reason}")


@dataclass
class ErrorReport:
    """Counts of skipped records by reason, with the records of each reason.

    Every skipped record is kept (``examples``, in the written report) unless
    ``max_examples`` caps them, in which case ``omitted`` says how many were left out; the
    printed :meth:`summary` shows the first ``shown`` per reason and says how many more
    there are, so the counts and the lists always agree.
    """

    max_examples: int | None = None
    shown: int = 5
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    processed: int = 0

    def add(self, err: RecordError) -> None:
        key = f"{err.field}: {err.reason}"
        self.counts[key] += 1
        self.examples.setdefault(key, [])
        if self.max_examples is None or len(self.examples[key]) < self.max_examples:
            self.examples[key].append(err.where)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            "processed": self.processed,
            "skipped": self.skipped,
            "reasons": [
                {
                    "reason": k,
                    "count": n,
                    "examples": self.examples[k],
                    "omitted": n - len(self.examples[k]),
                }
                for k, n in self.counts.most_common()
            ],
        }

    def summary(self) -> str:
        lines = [f"{self.skipped} of {self.processed} records skipped"]
        for k, n in self.counts.most_common():
            ex = self.examples[k][: self.shown]
            more = f", and {n - len(ex)} more in the error report" if n > len(ex) else ""
            lines.append(f"  {n:6d}  {k}  ({', '.join(ex)}{more})")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def handle(err: RecordError, on_error: str, report: ErrorReport) -> None:
    """Raise ``err`` (``on_error == "raise"``) or record it in ``report`` (``"skip"``)."""
    if on_error == "raise":
        raise err
    if on_error != "skip":
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report.add(err)
