"""Optional LLM-judge answer extraction (``visgrpo eval --judge URL``), as the official
MathVista and MathVerse evaluations do it; rule-based extraction stays the default.

The judge is any OpenAI-compatible chat endpoint (a local vLLM or SGLang server, or an
API): ``POST {URL}/chat/completions`` with one user message, temperature 0, as the
official scripts send it (MathVista ``models/gpt.py``: ``max_tokens=1024``; MathVerse
``evaluation/utils.py`` ``get_chat_response``: ``max_tokens=256``). Only the standard
library talks to it (``urllib``); its replies are only ever compared as text.

* MathVista (lupantech/MathVista ``evaluation/extract_answer.py`` ``extract_answer``,
  lines 29-77): an empty response extracts ``""``; a response that is one of the choices,
  or parses as the integer / float the question asks for, is its own extraction; otherwise
  the judge extracts with the few-shot prompt. The extraction is then scored by the
  benchmark's rule-based scorer (``calculate_score.py`` normalises and compares the
  extraction without a judge).
* MathVerse (ZrrSkywalker/MathVerse): the judge extracts (``extract_answer_s1.py``; a
  repeated ``"Extracted Answer: "`` is stripped), then judges the extraction against the
  gold answer (``score_answer_s2.py``): the reply, less ``"Judgement:"``, must be ``0`` or
  ``1`` and is asked again otherwise (the official loop retries without end; here
  ``max_retries`` times, then the benchmark fails with one line).

Every reply is cached on disk (``OUT/judge/cache.jsonl``, keyed by judge model and prompt,
appended atomically like the predictions), so a rerun or a resumed run asks nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.judge_prompts import (
    mathverse_extract_prompt,
    mathverse_score_prompt,
    mathvista_extract_prompt,
)
from visgrpo.evaluation.progress import append_records, read_records
from visgrpo.evaluation.runner import ItemResult
from visgrpo.evaluation.scoring import score

MATHVISTA_MAX_TOKENS = 1024  # MathVista models/gpt.py GPT_Model default
MATHVERSE_MAX_TOKENS = 256  # MathVerse evaluation/utils.py get_chat_response default


class JudgeError(RuntimeError):
    """The judge could not be reached or gave no usable reply (one line)."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is and how it is asked.

    Args:
        url: base URL of an OpenAI-compatible API (``http://localhost:8000/v1``).
        model: the judge's model name (``--judge-model``).
        api_key_env: environment variable holding the API key (none sent when unset).
        timeout_s: per request. max_retries: attempts per prompt (transient errors: 429,
            5xx, connection errors, empty replies; and MathVerse judgements not 0/1).
        workers: requests in flight at once.
    """

    url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 5
    workers: int = 8

    def describe(self) -> str:
        return f"judge:{self.model}"


class Judge:
    """A chat client with an on-disk reply cache."""

    def __init__(self, config: JudgeConfig, cache_path: Path):
        self.config, self.cache_path = config, Path(cache_path)
        self.requests = 0  # sent over HTTP (cache misses)
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        if self.cache_path.exists():
            for rec in read_records(self.cache_path, repair=True):
                self._cache[rec["key"]] = rec["reply"]

    def _key(self, prompt: str, max_tokens: int) -> str:
        blob = json.dumps([self.config.model, max_tokens, prompt], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def ask(self, prompt: str, max_tokens: int, fresh: bool = False) -> str:
        """The judge's reply (stripped) to one user message; cached unless ``fresh``."""
        key = self._key(prompt, max_tokens)
        with self._lock:
            if not fresh and key in self._cache:
                return self._cache[key]
        reply = self._post(prompt, max_tokens)
        with self._lock:
            self._cache[key] = reply
            append_records(self.cache_path, [{"key": key, "model": self.config.model,
                                              "reply": reply}])
        return reply

    def _post(self, prompt: str, max_tokens: int) -> str:
        cfg = self.config
        body = json.dumps({"model": cfg.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0, "max_tokens": max_tokens, "n": 1}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = cfg.url.rstrip("/") + "/chat/completions"
        last = "no attempt"
        for attempt in range(cfg.max_retries):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            with self._lock:
                self.requests += 1
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
                    data = json.loads(resp.read().decode("utf-8"))
                content = (data["choices"][0]["message"]["content"] or "").strip()
                if content:
                    return content
                last = "empty reply"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}"
                if err.code not in (408, 409, 429) and err.code < 500:
                    break  # a client error (bad model name, bad key) does not go away
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = str(getattr(err, "reason", err))
            except (ValueError, KeyError, IndexError, TypeError):
                last = "not an OpenAI chat completion"
        raise JudgeError(f"judge {url} ({cfg.model}): {last} after {attempt + 1} attempt(s)")


def mathvista_extraction(judge: Judge, response: str, item: EvalItem) -> str:
    """MathVista ``extract_answer`` (quick_extract off, its default)."""
    if response == "":
        return ""
    choices = list(item.meta.get("choices") or item.meta.get("options") or [])
    multi = item.meta.get("question_type", "multi_choice" if item.scorer == "choice" else "") == "multi_choice"
    if multi and response in choices:
        return response
    atype = item.meta.get("answer_type", item.category)
    try:
        if atype == "integer":
            return str(int(response))
        if atype == "float":
            return str(float(response))
    except ValueError:
        pass
    return judge.ask(mathvista_extract_prompt(item.question, response), MATHVISTA_MAX_TOKENS)


def mathverse_judgement(judge: Judge, response: str, item: EvalItem) -> tuple[str, float]:
    """MathVerse: ``(extraction, 0.0 | 1.0)`` from the two judge steps."""
    extraction = judge.ask(mathverse_extract_prompt(response), MATHVERSE_MAX_TOKENS)
    extraction = extraction.replace("Extracted Answer: ", "").strip()
    # score_answer_s2 shows the judge the record's raw ``question``: a loader that keeps it in
    # ``meta["question"]`` gets exactly that; otherwise the prompt's question is used.
    prompt = mathverse_score_prompt(str(item.meta.get("question", item.question)),
                                    str(item.answer), extraction)
    for attempt in range(judge.config.max_retries):
        verdict = judge.ask(prompt, MATHVERSE_MAX_TOKENS, fresh=attempt > 0)
        verdict = verdict.replace("Judgement:", "").strip()
        if verdict in ("0", "1"):
            return extraction, float(verdict)
    raise JudgeError(f"record {item.id!r}: the judge's verdict {verdict[:40]!r} is not 0 or 1 "
                     f"after {judge.config.max_retries} tries")


def judged(benchmark: str) -> bool:
    """Whether the official scorer of ``benchmark`` extracts answers with a judge."""
    return benchmark.startswith(("mathvista", "mathverse"))


def judge_results(benchmark: str, results: list[ItemResult], judge: Judge,
                  progress: bool = True) -> None:
    """Replace the rule-based scores of a judged benchmark's results by the judge's (in
    place; ``extractions`` set). Requests run ``judge.config.workers`` at a time.
    """
    from tqdm.auto import tqdm

    def one(job: tuple[int, int]) -> tuple[str, float]:
        r = results[job[0]]
        text = r.completions[job[1]]
        if benchmark.startswith("mathverse"):
            return mathverse_judgement(judge, text, r.item)
        extraction = mathvista_extraction(judge, text, r.item)
        return extraction, score(extraction, r.item)

    jobs = [(i, k) for i, r in enumerate(results) for k in range(len(r.completions))]
    with ThreadPoolExecutor(max_workers=judge.config.workers) as pool:
        outs = list(tqdm(pool.map(one, jobs), total=len(jobs), desc=f"{benchmark} judge",
                         unit="ans", disable=not progress))
    for r in results:
        r.extractions = [""] * len(r.completions)
    for (i, k), (extraction, value) in zip(jobs, outs, strict=True):
        results[i].extractions[k] = extraction
        results[i].scores[k] = value
