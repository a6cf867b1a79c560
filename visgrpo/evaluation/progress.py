"""Resumable predictions: an append-only JSONL journal per benchmark and rank.

``OUT/progress/<benchmark>/part-<rank>.jsonl`` starts with one header line (the run's
fingerprint: model, protocol, sampling, prompt) and then holds one line per finished
batch: ``{"batch": b, "key": digest of its items, "items": [{"id", "completions",
"run_meta"}, ...]}``. Each batch is
appended with one ``write`` and ``fsync``ed, so a killed run leaves every finished batch on
disk and at most one torn last line, which the next run cuts off before appending. A rerun
with the same fingerprint generates only the batches no part file holds for the same
items (so ``--limit 50`` then the full benchmark reuses the first 50); a different
fingerprint is refused (one line naming the differing field) unless ``--restart``.

Batches are numbered over the whole benchmark (``batch_size`` items each, in order), and
every rank owns whole batches, so a batch has the same prompts and seed whichever rank and
world size run it: the merged predictions do not depend on the number of ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from visgrpo.evaluation.items import EvalItem

HEADER = "run"
# Item fields the runner sets while building prompts and the scorers read (grounding items).
RUN_META = ("family", "width", "height", "resized_hw")


def append_records(path: Path, records: list[dict]) -> None:
    """Append ``records`` as JSON lines with one ``os.write`` (retried on a short write),
    then ``fsync``: a kill leaves whole lines plus at most one torn last line.
    """
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path, repair: bool = False) -> list[dict]:
    """The complete lines of a journal; a torn last line (no newline: the writer was killed
    mid-append) is ignored, and cut off the file with ``repair`` (only its owner repairs).
    """
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if repair and end < len(raw):
        os.truncate(path, end)
    records = []
    for n, line in enumerate(raw[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}: line {n} is not JSON (a corrupt journal; "
                             "pass --restart to discard it)") from None
    return records


def items_digest(items: list[EvalItem]) -> str:
    """A digest of what the model was asked: the items' ids and questions, in order (gold
    answers and scorers are not in it: scoring is redone on every run).
    """
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.id, it.question]).encode())
    return h.hexdigest()[:16]


def model_fingerprint(path: str | Path) -> str:
    """Path, size and modification time of the model's files (a retrained model at the same
    path gets a new fingerprint, so its predictions are never mixed with the old ones).
    """
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in
                       (".safetensors", ".bin", ".json", ".pt", ".ckpt"))
    else:
        files = []
    h = hashlib.sha256(str(p.resolve() if p.exists() else path).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class Journal:
    """The progress of one benchmark: the batches every rank has finished."""

    def __init__(self, folder: Path, header: dict, rank: int = 0):
        self.folder, self.header, self.rank = Path(folder), header, rank
        self.own = self.folder / f"part-{rank:03d}.jsonl"
        self._started = False  # the own part file holds the header (checked once)

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.jsonl")) if self.folder.is_dir() else []

    def _check_header(self, path: Path, records: list[dict]) -> None:
        if not records:
            return
        found = records[0].get(HEADER)
        if not isinstance(found, dict):
            raise ValueError(f"{path}: no header line (pass --restart to discard it)")
        for key in sorted(set(found) | set(self.header)):
            if found.get(key) != self.header.get(key):
                raise ValueError(
                    f"{path}: predictions of another run ({key}: {str(found.get(key))[:60]!r} there, "
                    f"{str(self.header.get(key))[:60]!r} now); pass --restart to discard them "
                    "or use another --out")

    def check(self) -> None:
        """Raise ``ValueError`` (one line) when a part file is from another run or corrupt."""
        for path in self.parts():
            self._check_header(path, read_records(path))

    def done(self, items: list[EvalItem], batch_size: int) -> dict[int, list[dict]]:
        """``{batch: item records}`` over all part files, for the batches recorded with the
        same items as ``items`` has now (a batch recorded differently is not done).
        """
        found: dict[int, list[dict]] = {}
        keys: dict[int, str] = {}
        for path in self.parts():
            records = read_records(path, repair=path == self.own)
            self._check_header(path, records)
            for rec in records[1:]:
                b = int(rec["batch"])
                if b in found or b * batch_size >= len(items):
                    continue
                if b not in keys:
                    keys[b] = items_digest(items[b * batch_size : (b + 1) * batch_size])
                if rec.get("key") == keys[b]:
                    found[b] = rec["items"]
        return found

    def record(self, batch: int, items: list[EvalItem], completions: list[list[str]]) -> None:
        """Append one finished batch (the header first, in a new or emptied part file)."""
        lines = []
        if not self._started:
            if not self.own.exists() or not read_records(self.own, repair=True):
                self.own.unlink(missing_ok=True)
                lines.append({HEADER: self.header})
            self._started = True
        lines.append({"batch": batch, "key": items_digest(items), "items": [
            {"id": it.id, "completions": list(texts),
             "run_meta": {k: it.meta[k] for k in RUN_META if k in it.meta}}
            for it, texts in zip(items, completions, strict=True)]})
        append_records(self.own, lines)

    def clear(self) -> None:
        """Discard every rank's progress (``--restart``)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def assemble(items: list[EvalItem], done: dict[int, list[dict]], batch_size: int) -> list[list[str]]:
    """The completions of every item, in item order, from the finished batches; the
    run-time fields the scorers read are restored onto the items.
    """
    out: list[list[str]] = []
    for b in range((len(items) + batch_size - 1) // batch_size):
        chunk = items[b * batch_size : (b + 1) * batch_size]
        if b not in done:
            raise ValueError(f"batch {b} (items {chunk[0].id!r}...) has no predictions")
        records = done[b]
        if [r["id"] for r in records] != [it.id for it in chunk]:
            raise ValueError(f"batch {b}: journal ids differ from the benchmark's; pass --restart")
        for item, rec in zip(chunk, records, strict=True):
            item.meta.update(rec.get("run_meta") or {})
            out.append(list(rec["completions"]))
    return out
