"""Text helpers shared by the reward functions: answer-tag extraction and normalisation.

All regular expressions here are linear in the input (no nested quantifiers), and inputs
are length-capped by the callers, so adversarial completions cannot stall a reward.
"""

from __future__ import annotations

import re
import string
import unicodedata

_TAG_CACHE: dict[str, re.Pattern] = {}


def _tag_re(tag: str) -> re.Pattern:
    if tag not in _TAG_CACHE:
        t = re.escape(tag)
        _TAG_CACHE[tag] = re.compile(rf"<{t}>(.*?)</{t}>", re.DOTALL | re.IGNORECASE)
    return _TAG_CACHE[tag]


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the LAST ``<tag>...</tag>`` in ``text`` (stripped), or ``None`` if absent.

    The last one is used because models often quote the tag while reasoning.
    """
    if not tag:
        return None
    matches = _tag_re(tag).findall(text)
    return matches[-1].strip() if matches else None


def answer_text(completion: str, tag: str | None = "answer") -> tuple[str, bool]:
    """``(text, tagged)``: the ``<tag>`` content if present, else the whole completion."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be str, got {type(completion).__name__}")
    inner = extract_tag(completion, tag) if tag else None
    return (inner, True) if inner is not None else (completion.strip(), False)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalise_text(text: str) -> str:
    """SQuAD-style normalisation: NFKC, lowercase, drop punctuation and articles, squeeze spaces.

    >>> normalise_text("  The  Eiffel-Tower! ")
    'eiffeltower'
    """
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = "".join(
        ch for ch in text if ch not in _PUNCT and not unicodedata.category(ch).startswith("P")
    )
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())
