"""MMMU's and MMMU-Pro's official rule-based answer parsing, transcribed.

Sources (MMMU-Benchmark/MMMU):

* ``mmmu/utils/eval_utils.py``: ``parse_multi_choice_response`` L10-62,
  ``check_is_number`` L65-74, ``normalize_str`` L76-98, ``extract_numbers`` L100-120,
  ``parse_open_response`` L122-171, ``eval_multi_choice`` L175-189, ``eval_open`` L191-216.
* ``mmmu-pro/evaluate.py``: its own ``parse_multi_choice_response`` L213-289 (an
  ``Answer:`` line first, then ``"A "`` and ``"A."`` candidates) and
  ``get_multi_choice_info`` L427-441.

The official parsers guess a random option when nothing is found (``random.choice``
under ``random.seed(42)`` set once at import, so a guess depends on the order items are
scored). Here the guess is drawn from a generator seeded by the record id, so it is the
same in any order and on any number of ranks.
"""

from __future__ import annotations

import random
import re

_PUNCT = [",", ".", "!", "?", ";", ":", "'"]


def multi_choice_info(options: list[str]) -> tuple[dict[str, str], list[str]]:
    """mmmu-pro/evaluate.py L427-441: ``({"A": option, ...}, ["A", ...])``."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    return dict(zip(letters, options, strict=True)), letters


def _last(candidates: list[str], positions: list[int]) -> str:
    """``candidates[np.argmax(positions)]`` (the first maximum)."""
    return candidates[max(range(len(positions)), key=lambda i: (positions[i], -i))]


def parse_multi_choice_response(response: str, all_choices: list[str],
                                index2ans: dict[str, str], rng: random.Random) -> str:
    """eval_utils.py L10-62: ``(A)`` candidates, else `` A `` candidates, else (over 5
    words) option texts; the last one found wins; a random option when none is.
    """
    for char in _PUNCT:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, ans_with_brack = True, False
    candidates = [c for c in all_choices if f"({c})" in response]
    if candidates:
        ans_with_brack = True
    else:
        candidates = [c for c in all_choices if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [i for i, ans in index2ans.items() if ans.lower() in response.lower()]
        index_ans = not candidates
    return _pick(response, candidates, index2ans, index_ans, ans_with_brack, all_choices, rng)


def _pick(response: str, candidates: list[str], index2ans: dict[str, str], index_ans: bool,
          ans_with_brack: bool, all_choices: list[str], rng: random.Random) -> str:
    """eval_utils.py L39-60 (= evaluate.py L266-287)."""
    if not candidates:
        return rng.choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if index_ans and ans_with_brack:
        positions = [response.rfind(f"({c})") for c in candidates]
    elif index_ans:
        positions = [response.rfind(f" {c} ") for c in candidates]
    else:
        positions = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return _last(candidates, positions)


def parse_multi_choice_response_pro(response: str, all_choices: list[str],
                                    index2ans: dict[str, str], rng: random.Random) -> str:
    """mmmu-pro/evaluate.py L213-289: a unique letter after the last ``Answer:`` first;
    then ``(A)``, ``"A "``, ``"A."`` candidates, then option texts, as MMMU.
    """
    last = response.rfind("Answer:")
    if last != -1:
        tail = response[last + len("Answer:"):].strip()
        matching = [c for c in all_choices if c in tail]
        if len(matching) == 1:
            return matching[0]
    for char in _PUNCT:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, ans_with_brack = True, False
    candidates = [c for c in all_choices if f"({c})" in response]
    if candidates:
        ans_with_brack = True
    else:
        candidates = [c for c in all_choices if f"{c} " in response]
    if not candidates:
        candidates = [c for c in all_choices if f"{c}." in response]
    if not candidates and len(response.split()) > 5:
        candidates = [i for i, ans in index2ans.items() if ans.lower() in response.lower()]
        index_ans = not candidates
    return _pick(response, candidates, index2ans, index_ans, ans_with_brack, all_choices, rng)


def check_is_number(string: str) -> bool:
    """eval_utils.py L65-74."""
    try:
        float(string.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize_str(string: str) -> list[str | float]:
    """eval_utils.py L76-98: numbers to floats rounded to 2; text lower-cased (a single
    character padded with a space so it cannot match trivially).
    """
    string = string.strip()
    if check_is_number(string):
        return [round(float(string.replace(",", "")), 2)]
    string = string.lower()
    if len(string) == 1:
        return [" " + string, string + " "]
    return [string]


_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def extract_numbers(string: str) -> list[str]:
    """eval_utils.py L100-120."""
    return _COMMAS.findall(string) + _SCIENTIFIC.findall(string) + _SIMPLE.findall(string)


_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]


def _key_subresponses(response: str) -> list[str]:
    """eval_utils.py L128-155 (the split's ``(?=[A-Z])`` never matches after
    ``lower()``: kept, as officially).
    """
    response = response.strip().strip(".").lower()
    sub_responses = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = list(_INDICATORS)
    keys = []
    for index, resp in enumerate(sub_responses):
        if index == len(sub_responses) - 1:
            indicators.append("=")
        shortest = None
        for indicator in indicators:
            if indicator in resp:
                tail = resp.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _PUNCT:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(response: str) -> list[str | float]:
    """eval_utils.py L122-171: the key sub-responses and the numbers in them, normalised."""
    keys = _key_subresponses(response)
    preds: list[str] = list(keys)
    for resp in keys:
        preds.extend(extract_numbers(resp))
    out: list[str | float] = []
    for p in preds:
        out.extend(normalize_str(p))
    return list(dict.fromkeys(out))


def eval_open(gold: str | list[str], preds: list[str | float]) -> bool:
    """eval_utils.py L191-216: a gold string inside a predicted string, or a predicted
    number equal to a gold number.
    """
    golds = gold if isinstance(gold, list) else [gold]
    norm: list[str | float] = []
    for g in golds:
        norm.extend(normalize_str(g))
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(n, str) and n in pred for n in norm):
                return True
        elif pred in norm:
            return True
    return False


def eval_multi_choice(gold: str | list[str], pred: str) -> bool:
    """eval_utils.py L175-189."""
    return pred in gold if isinstance(gold, list) else gold == pred
