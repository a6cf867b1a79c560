"""The official rule-based answer parsers of POPE, HallusionBench, We-Math and LogicVista,
transcribed with the file and line they come from. Each returns the parsed prediction;
``visgrpo.evaluation.scoring`` compares it with the gold answer.

All of them read the ``<answer>...</answer>`` content when a completion has one (the
format visgrpo trains), else the whole completion exactly as the official scripts do.
"""

from __future__ import annotations

import re

from visgrpo.rewards.accuracy import extract_choice
from visgrpo.rewards.parsing import answer_text


def answer_part(completion: str) -> str:
    """The ``<answer>`` content if present, else the completion (stripped)."""
    return answer_text(completion, "answer")[0]


# ------------------------------------------------------------------------------ POPE


def pope_parse(text: str) -> str:
    """AoiDragon/POPE ``evaluate.py:9-21``: keep the first sentence, drop commas, split on
    spaces; ``No`` / ``not`` / ``no`` among the words means ``no``, anything else ``yes``.
    """
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


# ---------------------------------------------------- yes / no (HallusionBench, VLMEvalKit)

_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
          "@", "`", ",", "?", "!"]
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: VLMEvalKit's pattern, kept as is


def process_punctuation(text: str) -> str:
    """``process_punctuation`` as open-compass/VLMEvalKit's ``YOrN_Extraction``
    (``vlmeval/dataset/utils/yorn.py``) calls it: the VQA-v2 evaluation's punctuation
    handling, quirks kept (``re.UNICODE`` passed where ``sub`` takes its count: at most 32
    periods are stripped).
    """
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, re.UNICODE)


def yorn_extract(text: str) -> str:
    """VLMEvalKit ``vlmeval/dataset/utils/yorn.py`` ``YOrN_Extraction``: ``yes`` when the
    words hold ``yes`` and not ``no``, ``no`` for the reverse, else ``unknown`` (wrong).
    """
    words = process_punctuation(text.lower()).split()
    if "yes" in words and "no" not in words:
        return "yes"
    if "yes" not in words and "no" in words:
        return "no"
    return "unknown"


# ---------------------------------------------------------------------------- We-Math


def wemath_parse(response: str) -> str | None:
    """We-Math/We-Math ``evaluation/four_dimensional_metrics.py:37-39`` (the same in
    ``accuracy.py``): the text after the last ``Answer``, with ``>``, ``<``, ``:`` and ``.``
    removed, stripped; its first character when it is one of ``A``-``H``, else ``None``.
    """
    text = response.split("Answer")[-1].strip()
    text = re.sub(r"[>><<:.]", "", text).strip()
    return text[0] if text and text[0] in "ABCDEFGH" else None


# ------------------------------------------------------------------------- LogicVista

_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_LETTERS = re.compile(r"^[\s(\[]*([A-Za-z])[\s)\].]*(?:(?:,|;|and|&|\s)+[\s(\[]*([A-Za-z])"
                      r"[\s)\].]*)*$")


def logicvista_truth(answer: str) -> list[str]:
    """Yijia-Xiao/LogicVista ``eval/extract_accuracy_new.py:141-148``: the gold answer
    split on ``", "``, lower-cased and sorted (``""`` gives ``[""]``).
    """
    return sorted(a.lower() for a in str(answer).split(", "))


def logicvista_extract(completion: str, numeric: bool) -> list[str]:
    r"""The choices a response makes, as the authors' extraction returns them
    (``extract_accuracy_new.py:78-134``): an empty response gives ``[""]``; a lone
    character that is neither a letter A-E nor a digit gives ``["ZZZZZ"]`` (no answer);
    otherwise GPT-4 lists the letters (or numbers) chosen. visgrpo's rules in place of that
    call: a list of letters (``"A, C"``, ``"A and C"``), one letter (``"The answer is B"``,
    ``\\boxed{B}``; any letter: some questions run to I), or, for questions answered by
    numbers, the numbers listed. The two official rules look at the raw response: only an
    empty response gives ``[""]`` (an empty ``<answer></answer>`` is no answer), and a
    lone ``"G"`` is no answer while ``<answer>G</answer>`` is read.
    """
    raw = completion.split("ASSISTANT:")[1] if "ASSISTANT:" in completion else completion
    raw = raw.strip()
    if not raw:
        return [""]
    if len(raw) == 1 and ((raw.isalpha() and raw.lower() not in "abcde")
                          or (not raw.isalpha() and not raw.isnumeric())):
        return ["ZZZZZ"]
    entry = answer_part(raw)
    if not entry:
        return ["ZZZZZ"]
    if numeric:
        span = re.split(r"(?:answer|Answer)\s*(?:is|:)", entry)[-1]
        found = _NUM.findall(span)
        return sorted(found) if found else ["ZZZZZ"]
    m = _LETTERS.match(entry)
    if m:
        return sorted({x.lower() for x in re.findall(r"[A-Za-z]", entry.replace("and", " "))})
    letter = extract_choice(entry)  # options run past E (v1_4: "Select answers from A-I")
    return [letter.lower()] if letter else ["ZZZZZ"]


def logicvista_match(completion: str, answer: str) -> bool:
    """``extract_accuracy_new.py:141-153``: the sorted lists must be equal."""
    truth = logicvista_truth(answer)
    numeric = all(t.replace(".", "", 1).lstrip("-").isdigit() for t in truth if t)
    return logicvista_extract(completion, numeric and truth != [""]) == truth
