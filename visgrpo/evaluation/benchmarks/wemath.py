"""We-Math testmini: the official answer parser, S1 / S2 / S3 accuracy and the strict and
loose four-dimensional metrics (We-Math/We-Math ``evaluation/``).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from visgrpo.evaluation.benchmarks.registry import get, register, text
from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.sources import ImageRef, read_rows

_KEY = re.compile(r"^([23])steps_(\d+|multi)$")


def _category(key: str, where: str) -> str:
    """``S1`` for a sub-question (``2steps_1``), ``S2`` / ``S3`` for the composite question
    (``2steps_multi`` / ``3steps_multi``): the split of ``accuracy.py:57-60``.
    """
    m = _KEY.match(key)
    if not m:
        raise ValueError(f"record {where!r}: key {key!r} is not Nsteps_<i> or Nsteps_multi")
    return f"S{m.group(1)}" if m.group(2) == "multi" else "S1"


def _embedded(value) -> bool:
    """An image cell that holds its pixels (a PIL image or a struct with bytes)."""
    return hasattr(value, "convert") or (isinstance(value, dict) and bool(value.get("bytes")))


@lru_cache(maxsize=8)
def _files_by_suffix(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[tuple[Path, str]]]]:
    """Files under ``root`` and members of its zip archives, by their last three path
    parts (``2steps/image/1-1.png``).
    """
    files: dict[str, list[Path]] = {}
    members: dict[str, list[tuple[Path, str]]] = {}
    for f in root.rglob("*"):
        if f.is_file() and f.suffix.lower() == ".zip":
            with zipfile.ZipFile(f) as archive:
                for name in archive.namelist():
                    if not name.endswith("/") and "__MACOSX" not in name:
                        members.setdefault("/".join(name.split("/")[-3:]), []).append((f, name))
        elif f.is_file():
            files.setdefault("/".join(f.parts[-3:]), []).append(f)
    return files, members


def resolve_image(root: Path, rel: str, where: str):
    """The image ``rel`` (``2steps/image/1-1.png``), relative to its step folder: ``root/rel``,
    else the one file (or zip member) whose path ends with ``rel``. The same file name exists
    in ``2steps/image`` and ``3steps/image``, so a bare file name is never matched.
    """
    rel = rel.replace("\\", "/").lstrip("./")
    if (root / rel).is_file():
        return str(root / rel)
    key = "/".join(rel.split("/")[-3:])
    files, members = _files_by_suffix(root)
    hits_f = [p for p in files.get(key, []) if p.as_posix().endswith("/" + rel)]
    hits_z = [(z, m) for z, m in members.get(key, []) if ("/" + m).endswith("/" + rel)]
    if len(hits_f) + len(hits_z) > 1:
        found = [str(p) for p in hits_f] + [f"{z.name}:{m}" for z, m in hits_z]
        raise ValueError(f"record {where!r}: image_path {rel!r} is ambiguous: "
                         f"{', '.join(found[:3])}")
    if hits_f:
        return str(hits_f[0])
    if hits_z:
        return {"zip": str(hits_z[0][0]), "member": hits_z[0][1]}
    raise ValueError(f"record {where!r}: image_path {rel!r} not found under {root} "
                     "(nor in its zip archives)")


def wemath_metrics(items: Sequence[EvalItem], completions: Sequence[str],
                   scores: Sequence[float]) -> dict[str, float]:
    """The strict and loose four-dimensional metrics of
    ``four_dimensional_metrics.py:58-100`` over the composite problems (``ID``) whose
    sub-questions and composite question were all evaluated.

    IK (insufficient knowledge): a step wrong and the composite wrong; IG (inadequate
    generalisation): every step right, the composite wrong; CM (complete mastery): strict,
    every step right and the composite right; loose, a step right and the composite right;
    RM (rote memorisation): strict, a step wrong but the composite right; loose, every step
    wrong but the composite right. IK / IG / CM are rates over the problems, RM over
    CM + RM; Score = (n - 0.5 IG - RM - IK) / n (the official ``n`` is the 525 problems
    of testmini; here the problems evaluated).
    """
    problems: dict[str, dict[str, bool]] = {}
    for item, score in zip(items, scores, strict=True):
        problems.setdefault(item.meta["problem"], {})[item.meta["key"]] = score >= 1.0
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    n = 0
    for keyed in problems.values():
        steps = sorted(k for k in keyed if not k.endswith("_multi"))
        multi = [k for k in keyed if k.endswith("_multi")]
        expected = int(multi[0][0]) if multi else 0
        if not multi or len(steps) != expected:
            continue  # a partial problem (--limit): not counted, as the merge would drop it
        n += 1
        parts = [keyed[k] for k in steps]
        composite = keyed[multi[0]]
        if composite:
            counts["RM_strict"] += not all(parts)
            counts["RM_loose"] += not any(parts)
            counts["CM_strict"] += all(parts)
            counts["CM_loose"] += any(parts)
        else:
            counts["IG"] += all(parts)
            counts["IK"] += not all(parts)
    if n == 0:
        return {}
    out = {"IK": counts["IK"] / n, "IG": counts["IG"] / n}
    for mode in ("strict", "loose"):
        cm, rm = counts[f"CM_{mode}"], counts[f"RM_{mode}"]
        out[f"{mode}/CM"] = cm / n
        out[f"{mode}/RM"] = rm / (cm + rm) if cm + rm else 0.0
        out[f"{mode}/score"] = (n - 0.5 * counts["IG"] - rm - counts["IK"]) / n
    return out


@register("wemath", scorer="wemath", metrics=wemath_metrics,
          source="We-Math/We-Math dataset card (testmini.json + testmini.zip); We-Math/We-Math "
                 "evaluation/four_dimensional_metrics.py, accuracy.py")
def wemath(root: Path) -> list[EvalItem]:
    """We-Math testmini (``huggingface-cli download --repo-type dataset We-Math/We-Math``:
    ``data/testmini-00000-of-00001-*.parquet`` with the images embedded, read first, and
    ``testmini.json`` + ``testmini.zip``, read when the parquet is absent, the zip as it
    comes or unpacked; ``knowledge_structure_nodes.json`` is not read). One record per
    question (dataset card / README): ``ID`` (the problem, ``2steps_1``: shared by its
    sub-questions and its composite question), ``key`` (``2steps_1``, ``2steps_2``,
    ``2steps_multi``, ``3steps_...``), ``question``, ``option`` (``"A. ...;B. ..."``),
    ``answer`` (a letter), ``image_path`` (an embedded image struct in the parquet; in the
    JSON ``2steps/image/1-1.png``, relative to the step folder wherever the archive puts it,
    read straight from the zip when not unpacked) or ``image``. Item id: ``ID/key`` (``ID``
    alone is not unique).
    Category: ``S1`` (sub-questions), ``S2`` / ``S3`` (composite questions), as
    ``accuracy.py`` splits them. Scorer ``wemath``: the official parser.
    """
    items = []
    for i, row in enumerate(read_rows(root, split="testmini")):
        problem = str(get(row, "ID", f"#{i}"))
        key = str(get(row, "key", problem))
        where = f"{problem}/{key}"
        value = row.get("image") or get(row, "image_path", where)
        if _embedded(value):
            image = ImageRef(value, root, where, "image_path")
        else:
            rel = str(value.get("path") if isinstance(value, dict) else value)
            image = ImageRef(resolve_image(root, rel, where), root, where, "image_path")
        question = f"{get(row, 'question', where)}\nOptions: {get(row, 'option', where)}"
        answer = text(get(row, "answer", where))
        if answer not in tuple("ABCDEFGH"):
            raise ValueError(f"record {where!r}: answer {answer!r} is not an option letter A-H")
        items.append(EvalItem(where, [image], question, answer, "wemath", _category(key, where),
                              {"problem": problem, "key": key}))
    return items
